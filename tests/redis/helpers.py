"""Small helpers shared by the Redis tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from redis.client import Redis

SRC = Path(__file__).resolve().parents[2] / "src"


def delete_prefix(client: Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(batch), 500):
        client.unlink(*batch[i : i + 500])


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def src_env() -> dict[str, str]:
    """The environment of a subprocess that imports platformdb from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env

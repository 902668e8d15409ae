"""The embedded stack serialises: a second process waits for a chDB path instead of failing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from platformdb.clickhouse import connect
from platformdb.errors import StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys
from platformdb.clickhouse import connect
with connect(sys.argv[1]) as client:
    client.command("SELECT 1")
    print("open", flush=True)
    sys.stdin.read()  # hold the path until the test closes stdin
"""


def holder(url: str) -> subprocess.Popen[str]:
    """A process that opens ``url`` and keeps it open until its stdin closes."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "open", process.stderr
    return process


def cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    return subprocess.Popen([sys.executable, "-m", "platformdb.cli", *args], env={**base, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


@pytest.mark.slow
def test_a_second_migrate_up_waits_for_the_first_and_then_succeeds(tmp_path: Path,
                                                                  pg: str) -> None:
    url = f"chdb://{tmp_path / 'clickhouse'}"
    env = {"PLATFORMDB_CLICKHOUSE_URL": url, "PLATFORMDB_POSTGRES_URL": pg,
           "PLATFORMDB_HOME": str(tmp_path)}
    first = holder(url)
    try:
        second = cli(env, "migrate", "up", "--store", "clickhouse")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(second.stderr or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any("waiting" in line for line in lines):  # it says so before it waits
            assert second.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.05)
    finally:
        assert first.stdin is not None
        first.stdin.close()
        first.wait(timeout=60)
    assert second.wait(timeout=300) == 0, lines
    reader.join(timeout=60)
    err = "".join(lines)
    assert f"in use by process {first.pid}" in err and "waiting up to" in err
    assert "Code: 76" not in err and "Cannot lock" not in err  # no raw engine line
    again = cli(env, "migrate", "up", "--store", "clickhouse")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "waiting" not in err


@pytest.mark.slow
def test_the_wait_is_bounded_and_names_the_holder(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'clickhouse'}"
    first = holder(url)
    try:
        started = time.monotonic()
        with (pytest.raises(StoreUnavailable, match=rf"still in use by process {first.pid}"),
              connect(url, wait=0.5)):
            pass
        assert time.monotonic() - started < 10
    finally:
        assert first.stdin is not None
        first.stdin.close()
        first.wait(timeout=60)
    with connect(url, wait=0.5) as client:  # free again
        assert client.query("SELECT 1").result_rows == [(1,)]

"""Where asyncio and threads really differ, side by side.

The asyncio modules of this package (``*_async.py``) are the source of the
blocking ones, which ``tools/async_to_sync.py`` generates by renaming: every
asyncio-only call goes through a name defined here, and the generator swaps
it for its threading twin defined right beside it (``AEvent`` -> ``Event``,
``asleep`` -> ``sleep``, ``aspawn`` -> ``spawn``...). Keep both halves of a
pair doing the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from redis.client import Redis

from platformdb.redis import _direct

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# ------------------------------------------------------------------ events

AEvent = asyncio.Event
Event = threading.Event


async def await_flag(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; whether it is set."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


def wait_flag(event: threading.Event, timeout: float | None) -> bool:
    return event.wait(timeout)


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


sleep = time.sleep

# -------------------------------------------------------- background units

AUnit: TypeAlias = "asyncio.Task[None]"
Unit: TypeAlias = threading.Thread


def aspawn(run: Callable[[], Coroutine[Any, Any, None]], name: str) -> asyncio.Task[None]:
    """Run ``run()`` beside the caller: a task here, a daemon thread in the twin."""
    return asyncio.get_running_loop().create_task(run(), name=name)


def spawn(run: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


async def ajoin(unit: asyncio.Task[None]) -> None:
    await unit


def join(unit: threading.Thread) -> None:
    unit.join()


# ------------------------------------------------------------- direct path


def no_direct_path(client: object) -> Redis | None:
    """asyncio clients have no direct path (see ``_direct.py``): always None."""
    return None


direct_path = _direct.usable

# ----------------------------------------------------------------- signals


def ainstall_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT until the returned function is called."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, callback)

    def restore() -> None:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)

    return restore


def install_signals(callback: Callable[[], None]) -> Callable[[], None]:
    def handler(signum: int, frame: object) -> None:
        callback()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore

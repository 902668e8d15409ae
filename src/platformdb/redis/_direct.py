"""A lean path for the blocking client's hot calls: one pooled connection per thread.

Every DSP request passes the rate limiter and every request a session check,
so these calls are worth a shortcut. ``Redis.execute_command`` wraps each
command in retry, event and observability hooks, and the pool checks each
connection it hands out with an extra ``poll`` system call; with redis-py 8
that costs about 40% of the limiter's single-call throughput on a loopback
server (``bench/bench_ratelimit.py`` measures both paths side by side).

So a plain standalone client's function calls keep one connection per thread,
**checked out of the client's own pool** (it counts against
``max_connections``, and at most half of the pool is ever pinned; past that,
calls take the regular path), and send on it directly:

- a reply the server sends as an error (INVALID ...) is raised as usual;
- a broken connection is dropped and :class:`Fallback` raised: the caller
  repeats the call through the regular client, whose retry policy applies (as
  with any retry, a call whose reply was lost may have run once already);
- the pinned connection goes back to the pool when its thread ends, and a
  forked child pins its own.

The asyncio client has no such path (``_acompat.no_direct_path``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from redis.client import Redis
from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class Fallback(Exception):
    """The direct path cannot serve this call; repeat it through the client."""


class _Pin:
    """A connection a thread holds out of ``pool``; back to the pool when dropped."""

    __slots__ = ("__weakref__", "conn", "pid", "pool")

    def __init__(self, pool: ConnectionPool, conn: Any) -> None:
        self.pool = pool
        self.conn = conn
        self.pid = os.getpid()

    def __del__(self) -> None:  # the thread ended, or the pin was dropped
        # at interpreter shutdown the pool may be half torn down: nothing to give back then
        with contextlib.suppress(Exception):
            _unpin(self.pool, self.conn, self.pid)


class _Pins(threading.local):
    def __init__(self) -> None:
        self.by_pool: weakref.WeakKeyDictionary[ConnectionPool, _Pin] = (
            weakref.WeakKeyDictionary()
        )


_pins = _Pins()
_pinned: weakref.WeakKeyDictionary[ConnectionPool, int] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def usable(client: object) -> Redis | None:
    """``client`` when the direct path applies: a plain pooled standalone ``Redis``."""
    if type(client) is not Redis or client.connection is not None:
        return None
    pool = client.connection_pool
    if not isinstance(pool, ConnectionPool) or getattr(pool, "cache", None) is not None:
        return None  # client-side caching wraps its connections; stay on the regular path
    return client


def _unpin(pool: ConnectionPool, conn: Any, pid: int) -> None:
    with _lock:
        _pinned[pool] = max(0, _pinned.get(pool, 1) - 1)
    if pid == os.getpid():
        pool.release(conn)


def _connection(pool: ConnectionPool) -> Any:
    pin = _pins.by_pool.get(pool)
    if pin is not None and pin.pid == os.getpid():
        return pin.conn
    with _lock:
        if _pinned.get(pool, 0) >= max(1, pool.max_connections // 2):
            raise Fallback("half of the pool is pinned already")
        _pinned[pool] = _pinned.get(pool, 0) + 1
    try:
        conn = pool.get_connection()
    except BaseException:
        with _lock:
            _pinned[pool] -= 1
        raise Fallback("the pool has no connection to spare") from None
    _pins.by_pool[pool] = _Pin(pool, conn)
    return conn


def _drop(pool: ConnectionPool, conn: Any) -> None:
    conn.disconnect()
    _pins.by_pool.pop(pool, None)  # _Pin.__del__ hands the connection back


def call(client: Redis, args: Sequence[Any]) -> Any:
    """Send one command and return its reply (or raise the server's error)."""
    pool = client.connection_pool
    conn = _connection(pool)
    try:
        conn.send_command(*args)
        return conn.read_response()
    except ResponseError:
        raise
    except (RedisConnectionError, RedisTimeoutError) as exc:
        _drop(pool, conn)
        raise Fallback(str(exc)) from exc
    except BaseException:
        _drop(pool, conn)  # a half-read reply must not reach the next call
        raise


def pipeline(client: Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send many commands in one write and read every reply; errors come back in place."""
    pool = client.connection_pool
    conn = _connection(pool)
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
    except (RedisConnectionError, RedisTimeoutError) as exc:
        _drop(pool, conn)
        raise Fallback(str(exc)) from exc
    except BaseException:
        _drop(pool, conn)
        raise

"""A lean path for the hot calls: one connection per thread, without middleware.

Every DSP request passes the rate limiter and every job a queue script, so
these calls are worth a shortcut. ``Redis.execute_command`` wraps each command
in retry, event and telemetry hooks, and the pool checks each connection it
hands out with an extra ``poll`` system call; together that costs a quarter of
a loopback round trip. For a plain standalone client the scripts instead keep
one connection per thread (built with the pool's own connection class and
settings: same address, credentials, TLS, timeouts, health checks, reply
parser) and send on it directly.

- A reply the server sends as an error (NOSCRIPT, INVALID ...) is raised as usual.
- A broken connection is dropped and :class:`Fallback` raised: the caller
  repeats the call through the regular client, whose retry policy applies
  (as with any retry, a call whose reply was lost may have run once already).
- The pinned connection belongs to the thread: it is closed when the thread
  ends or the client is garbage-collected, and a forked child opens its own.
  So a service holds one extra connection per thread that uses the scripts.
"""

from __future__ import annotations

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
    """The direct path lost its connection; repeat the call through the client."""


class _Pins(threading.local):
    def __init__(self) -> None:
        self.by_pool: weakref.WeakKeyDictionary[ConnectionPool, Any] = (
            weakref.WeakKeyDictionary()
        )


_pins = _Pins()


def usable(client: object) -> Redis | None:
    """``client`` when the direct path applies: a plain pooled standalone ``Redis``."""
    if type(client) is not Redis or client.connection is not None:
        return None
    if getattr(client.connection_pool, "cache", None) is not None:
        return None  # client-side caching wraps its connections; stay on the regular path
    return client


def _connection(pool: ConnectionPool) -> Any:
    conn = _pins.by_pool.get(pool)
    if conn is None or conn.pid != os.getpid():
        conn = pool.connection_class(**pool.connection_kwargs)
        _pins.by_pool[pool] = conn
    return conn


def _drop(pool: ConnectionPool, conn: Any) -> None:
    _pins.by_pool.pop(pool, None)
    conn.disconnect()


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

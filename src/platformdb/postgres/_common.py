"""What the blocking and the asyncio tenant code share: ids, SQL, pool registries.

Everything that differs between the two sides lives here, so that
``_tenancy.py`` stays a mechanical copy of ``_tenancy_async.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import uuid
import weakref
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from platformdb.errors import ValidationError

APP_ROLE = "platform_app"
CONNECT_TIMEOUT = 10
# psycopg prepares a statement on its 5th execution; PgBouncer in transaction
# mode before 1.21 (or with max_prepared_statements = 0) needs None.
PREPARE_THRESHOLD = 5

# What a pooled connection must not carry to its next borrower. Like DISCARD
# ALL, minus DEALLOCATE ALL (psycopg keeps its own cache of prepared
# statements, and PgBouncer >= 1.21 tracks them per server connection) and
# minus DISCARD PLANS / SEQUENCES (no security meaning). Each statement only
# touches the server session it runs on, so through PgBouncer in transaction
# mode it is harmless; there the transaction-bound tenant context is what
# keeps tenants apart.
RESET_SQL = (
    "RESET ALL; RESET ROLE; RESET SESSION AUTHORIZATION; CLOSE ALL; UNLISTEN *;"
    " SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP"
)


def parse_org_id(value: str | uuid.UUID, what: str = "org_id") -> uuid.UUID:
    """A tenant id as a UUID, or a :class:`ValidationError` naming the bad value."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ValidationError(f"{what} must be a UUID, got {value!r}") from exc


def set_tenant_statement(org: uuid.UUID, user: uuid.UUID | None,
                         role: str | None) -> tuple[str, tuple[Any, ...]]:
    """One statement that scopes the transaction: ``set_tenant`` (and the role).

    ``set_config('role', ..., true)`` is ``SET LOCAL ROLE`` taking the role as
    a parameter, so the role switch costs no extra round trip.
    """
    if role is None:
        return "SELECT public.set_tenant(%s, %s)", (org, user)
    return ("SELECT pg_catalog.set_config('role', %s, true), public.set_tenant(%s, %s)",
            (role, org, user))


def connection_kwargs(prepare_threshold: int | None) -> dict[str, Any]:
    return {"connect_timeout": CONNECT_TIMEOUT, "prepare_threshold": prepare_threshold}


# Shared pools behind ``tenant_connection(url, ...)``: one per URL and process
# (blocking), one per URL and event loop (asyncio).
_POOLS: dict[int, dict[str, ConnectionPool]] = {}
_ASYNC_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                        dict[str, AsyncConnectionPool]] = (
    weakref.WeakKeyDictionary())


def pool_registry() -> dict[str, ConnectionPool]:
    """This process's shared pools (a forked child starts with none)."""
    return _POOLS.setdefault(os.getpid(), {})


def async_pool_registry() -> dict[str, AsyncConnectionPool]:
    """The running event loop's shared pools."""
    loop = asyncio.get_running_loop()
    registry = _ASYNC_POOLS.get(loop)
    if registry is None:
        registry = _ASYNC_POOLS.setdefault(loop, {})
    return registry


@atexit.register
def _close_process_pools() -> None:
    for pool in _POOLS.pop(os.getpid(), {}).values():
        pool.close()

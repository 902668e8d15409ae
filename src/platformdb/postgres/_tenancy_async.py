"""Tenant-scoped transactions and pools over psycopg's pools.

The asyncio module is the source: the blocking twin is generated from it by
``tools/async_to_sync.py`` (CI fails when it is stale).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from platformdb.errors import ValidationError
from platformdb.postgres import _common
from platformdb.postgres._common import (
    PREPARE_THRESHOLD,
    RESET_SQL,
    connection_kwargs,
    parse_org_id,
    set_tenant_statement,
)


async def async_reset_connection(conn: AsyncConnection[Any]) -> None:
    """Clear what a borrower may have left in the session (the pool's ``reset``)."""
    await conn.execute(RESET_SQL)
    await conn.commit()


def create_async_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    prepare_threshold: int | None = PREPARE_THRESHOLD,
) -> AsyncConnectionPool:
    """A pool that resets every connection it takes back; open it before use.

    ``async with create_async_pool(...) as pool`` opens and closes it. Behind
    PgBouncer in transaction mode older than 1.21 (or with
    ``max_prepared_statements = 0``) pass ``prepare_threshold=None``.
    """
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs=connection_kwargs(prepare_threshold), reset=async_reset_connection,
    )


async def async_shared_pool(url: str) -> AsyncConnectionPool:
    """The pool ``async_tenant_connection(url, ...)`` uses for ``url``, opened on first use."""
    registry = _common.async_pool_registry()
    pool = registry.get(url)
    if pool is None:
        pool = registry.setdefault(url, create_async_pool(url))
    await pool.open()
    return pool


async def async_close_shared_pools() -> None:
    """Close the shared pools (at shutdown; the next use opens new ones)."""
    registry = _common.async_pool_registry()
    while registry:
        _, pool = registry.popitem()
        await pool.close()


@asynccontextmanager
async def async_tenant_transaction(
    conn: AsyncConnection[Any],
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> AsyncIterator[AsyncConnection[Any]]:
    """Run a block in one transaction scoped to ``org_id`` (and ``user_id``).

    The tenant is set with ``set_tenant()``, which binds it to this
    transaction: it ends with the block, whether the block commits or raises.
    ``role`` additionally switches to that role for the transaction (``SET
    LOCAL ROLE``), e.g. ``platform_app`` when the login role is the owner.
    """
    org = parse_org_id(org_id)
    user = parse_org_id(user_id, "user_id") if user_id is not None else None
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Nested in an open transaction, the tenant would outlive the block (until the outer
        # COMMIT) and leak into whatever the caller runs next.
        raise ValidationError("tenant_transaction must start the transaction: commit or roll "
                              "back first, or use an autocommit connection")
    async with conn.transaction():
        await conn.execute(*set_tenant_statement(org, user, role))
        yield conn


@asynccontextmanager
async def async_tenant_connection(
    source: AsyncConnectionPool | str,
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection inside a tenant-scoped transaction.

    ``source`` is a pool, or a URL: then the process-wide pool of that URL
    (:func:`async_shared_pool`), never a new connection per call.
    """
    pool = source if isinstance(source, AsyncConnectionPool) else await async_shared_pool(source)
    async with (
        pool.connection() as conn,
        async_tenant_transaction(conn, org_id, user_id, role=role) as scoped,
    ):
        yield scoped

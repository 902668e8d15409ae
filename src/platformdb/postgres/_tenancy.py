# Generated from _tenancy_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
"""Tenant-scoped transactions and pools over psycopg's pools.

The asyncio module is the source: the blocking twin is generated from it by
``tools/async_to_sync.py`` (CI fails when it is stale).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool

from platformdb.errors import ValidationError
from platformdb.postgres import _common
from platformdb.postgres._common import (
    PREPARE_THRESHOLD,
    RESET_SQL,
    connection_kwargs,
    parse_org_id,
    set_tenant_statement,
)


def reset_connection(conn: Connection[Any]) -> None:
    """Clear what a borrower may have left in the session (the pool's ``reset``)."""
    conn.execute(RESET_SQL)
    conn.commit()


def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    prepare_threshold: int | None = PREPARE_THRESHOLD,
) -> ConnectionPool:
    """A pool that resets every connection it takes back; open it before use.

    ``with create_pool(...) as pool`` opens and closes it. Behind
    PgBouncer in transaction mode older than 1.21 (or with
    ``max_prepared_statements = 0``) pass ``prepare_threshold=None``.
    """
    return ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs=connection_kwargs(prepare_threshold), reset=reset_connection,
    )


def shared_pool(url: str) -> ConnectionPool:
    """The pool ``tenant_connection(url, ...)`` uses for ``url``, opened on first use."""
    registry = _common.pool_registry()
    pool = registry.get(url)
    if pool is None:
        pool = registry.setdefault(url, create_pool(url))
    pool.open()
    return pool


def close_shared_pools() -> None:
    """Close the shared pools (at shutdown; the next use opens new ones)."""
    registry = _common.pool_registry()
    while registry:
        _, pool = registry.popitem()
        pool.close()


@contextmanager
def tenant_transaction(
    conn: Connection[Any],
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> Iterator[Connection[Any]]:
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
    with conn.transaction():
        conn.execute(*set_tenant_statement(org, user, role))
        yield conn


@contextmanager
def tenant_connection(
    source: ConnectionPool | str,
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> Iterator[Connection[Any]]:
    """A pooled connection inside a tenant-scoped transaction.

    ``source`` is a pool, or a URL: then the process-wide pool of that URL
    (:func:`shared_pool`), never a new connection per call.
    """
    pool = source if isinstance(source, ConnectionPool) else shared_pool(source)
    with (
        pool.connection() as conn,
        tenant_transaction(conn, org_id, user_id, role=role) as scoped,
    ):
        yield scoped

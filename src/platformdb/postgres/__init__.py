"""The one way into PostgreSQL: connections, pools and tenant-scoped transactions.

Row-level security reads the tenant from two transaction-local settings,
``app.current_org_id`` and ``app.current_user_id``. :func:`tenant_transaction`
opens a transaction, sets both with ``set_config(..., true)`` and commits or
rolls back on exit, so the setting can never leak to the pooled connection's
next user.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from platformdb.config import mask_password
from platformdb.errors import StoreUnavailable, ValidationError, one_line

APP_ROLE = "platform_app"
CONNECT_TIMEOUT = 10

__all__ = [
    "APP_ROLE",
    "connect",
    "create_pool",
    "parse_org_id",
    "tenant_connection",
    "tenant_transaction",
]


def connect(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[TupleRow]:
    """Open a connection, turning connection failures into one clear line."""
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT, **kwargs
        )
    except psycopg.OperationalError as exc:
        reason = one_line(str(exc)) or type(exc).__name__
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {mask_password(url)}: {reason}",
            store="postgresql") from exc
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"invalid PostgreSQL URL {mask_password(url)}: {exc}",
                               store="postgresql") from exc


def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> ConnectionPool:
    """A psycopg connection pool; open it with ``with create_pool(...) as pool``."""
    return ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs={"connect_timeout": CONNECT_TIMEOUT},
    )


def parse_org_id(value: str | uuid.UUID, what: str = "org_id") -> uuid.UUID:
    """A tenant id as a UUID, or a :class:`ValidationError` naming the bad value."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ValidationError(f"{what} must be a UUID, got {value!r}") from exc


@contextmanager
def tenant_transaction(
    conn: psycopg.Connection[Any],
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> Iterator[psycopg.Connection[Any]]:
    """Run a block in one transaction scoped to ``org_id`` (and ``user_id``).

    ``role`` additionally switches to that role for the transaction (``SET
    LOCAL ROLE``), e.g. ``platform_app`` when the login role is the owner.
    """
    org = parse_org_id(org_id)
    user = parse_org_id(user_id, "user_id") if user_id is not None else None
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Nested in an open transaction, SET LOCAL would outlive the block (until the outer
        # COMMIT) and leak this tenant into whatever the caller runs next.
        raise ValidationError("tenant_transaction must start the transaction: commit or roll "
                              "back first, or use an autocommit connection")
    with conn.transaction():
        if role is not None:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute(
            "SELECT set_config('app.current_org_id', %s, true),"
            " set_config('app.current_user_id', %s, true)",
            (str(org), str(user) if user else ""),
        )
        yield conn


@contextmanager
def tenant_connection(
    source: ConnectionPool | str,
    org_id: str | uuid.UUID,
    user_id: str | uuid.UUID | None = None,
    *,
    role: str | None = None,
) -> Iterator[psycopg.Connection[Any]]:
    """A connection from a pool (or URL) inside a tenant-scoped transaction."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn, tenant_transaction(conn, org_id, user_id,
                                                             role=role) as scoped:
            yield scoped
        return
    with connect(source) as conn, tenant_transaction(conn, org_id, user_id, role=role) as scoped:
        yield scoped

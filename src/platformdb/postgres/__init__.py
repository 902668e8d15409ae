"""The one way into PostgreSQL: connections, pools and tenant-scoped transactions.

Row-level security reads the tenant through ``current_org_id()``, which
honours ``app.current_org_id`` only when ``set_tenant()`` set it in the
running transaction. :func:`tenant_transaction` opens a transaction, calls
``set_tenant`` and commits or rolls back on exit; the tenant ends with the
transaction, and a value someone set for the whole session is ignored.
Pools from :func:`create_pool` reset every connection they take back.

Every function has an asyncio twin (``async_tenant_transaction``,
``async_tenant_connection``, ``create_async_pool``...) over psycopg's
``AsyncConnection`` and ``AsyncConnectionPool``, with the same semantics.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import TupleRow

from platformdb.errors import StoreUnavailable, one_line
from platformdb.postgres._common import APP_ROLE, CONNECT_TIMEOUT, RESET_SQL, parse_org_id
from platformdb.postgres._tenancy import (
    close_shared_pools,
    create_pool,
    reset_connection,
    shared_pool,
    tenant_connection,
    tenant_transaction,
)
from platformdb.postgres._tenancy_async import (
    async_close_shared_pools,
    async_reset_connection,
    async_shared_pool,
    async_tenant_connection,
    async_tenant_transaction,
    create_async_pool,
)
from platformdb.redaction import redact

__all__ = [
    "APP_ROLE",
    "CONNECT_TIMEOUT",
    "RESET_SQL",
    "async_close_shared_pools",
    "async_reset_connection",
    "async_shared_pool",
    "async_tenant_connection",
    "async_tenant_transaction",
    "close_shared_pools",
    "connect",
    "create_async_pool",
    "create_pool",
    "parse_org_id",
    "reset_connection",
    "shared_pool",
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
            f"cannot connect to PostgreSQL at {redact(url)}: {reason}",
            store="postgresql") from exc
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"invalid PostgreSQL URL {redact(url)}: {exc}",
                               store="postgresql") from exc

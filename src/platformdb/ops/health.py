"""``platformdb health``: the spec's ``SELECT 1`` / ``SELECT 1`` / ``PING`` with latency,
plus each store's migration ledger (pending migrations, drift).

A health check never starts anything: a store whose embedded server is not
running is reported down (see :mod:`platformdb.stores`).
"""

from __future__ import annotations

from platformdb.ops.context import Context, context
from platformdb.types import Endpoints, StoreHealth

__all__ = ["StoreHealth", "check"]


def check(target: Context | Endpoints, stores: list[str] | None = None) -> list[StoreHealth]:
    """The health of ``stores`` (default: every store), in registry order, each followed by
    what serves it (PostgreSQL: PgBouncer's pools, when one pools it)."""
    return [row for store in context(target).stores(stores) for row in store.health_rows()]

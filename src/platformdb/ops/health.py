"""Health checks: the spec's ``SELECT 1`` / ``SELECT 1`` / ``PING`` with latency,
plus each store's migration ledger (pending migrations, drift).

A health check never starts anything: a store whose embedded server is not
running is reported down (see :mod:`platformdb.stores`).
"""

from __future__ import annotations

from platformdb.stores import open_stores
from platformdb.stores.postgres import pgbouncer
from platformdb.types import Endpoints, StoreHealth

__all__ = ["StoreHealth", "check"]


def check(endpoints: Endpoints, stores: list[str] | None = None) -> list[StoreHealth]:
    """The health of ``stores`` (default: every store), in registry order; PgBouncer's
    right after PostgreSQL's when one pools it (``endpoints.pgbouncer``)."""
    results = []
    for store in open_stores(endpoints, stores):
        results.append(store.health())
        if store.name == "postgresql" and endpoints.pgbouncer is not None:
            results.append(pgbouncer.health(endpoints.pgbouncer))
    return results

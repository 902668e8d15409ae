"""``platformdb health``: the spec's ``SELECT 1`` / ``SELECT 1`` / ``PING`` with latency,
plus each store's migration ledger (pending migrations, drift); ClickHouse's
dictionaries are loaded from their sources and must answer.

A health check never starts anything: a store whose embedded server is not
running is reported down (see :mod:`platformdb.stores`).
"""

from __future__ import annotations

from platformdb.ops.backup import leftovers
from platformdb.ops.context import Context, context
from platformdb.types import Endpoints, StoreHealth

__all__ = ["StoreHealth", "check"]


def check(target: Context | Endpoints, stores: list[str] | None = None) -> list[StoreHealth]:
    """The health of ``stores`` (default: every store), in registry order, each followed by
    what serves it (PostgreSQL: PgBouncer's pools, when one pools it); for every store,
    a last ``leftovers`` row when an interrupted operation left something behind."""
    ctx = context(target)
    rows = [row for store in ctx.stores(stores) for row in store.health_rows()]
    if stores is None:
        rows.extend(leftover_rows(ctx))
    return rows


def leftover_rows(target: Context | Endpoints) -> list[StoreHealth]:
    """One unhealthy ``leftovers`` row naming what interrupted operations left (an
    unfinished journal, scratch databases, staging keys), or none when nothing is left."""
    found = leftovers(target)
    if not found:
        return []
    detail = "; ".join(f"{where}: {', '.join(names)}" for where, names in found.items())
    return [StoreHealth("leftovers", False, None, "interrupted operations",
                        f"{detail} (`platformdb recover --cleanup` removes them)",
                        problems=[f"{where}: {name}" for where, names in found.items()
                                  for name in names])]


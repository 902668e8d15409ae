"""``platformdb health``: the spec's ``SELECT 1`` / ``SELECT 1`` / ``PING`` with latency,
plus each store's migration ledger (pending migrations, drift); ClickHouse's
dictionaries are loaded from their sources and must answer.

A health check never starts anything: a store whose embedded server is not
running is reported down (see :mod:`platformdb.stores`).
"""

from __future__ import annotations

from typing import Any

from platformdb import clickhouse
from platformdb.errors import PlatformDBError
from platformdb.ops.context import Context, context
from platformdb.stores.clickhouse import HEALTH_WAIT
from platformdb.stores.clickhouse.dictionaries import load_problems
from platformdb.types import Endpoints, StoreHealth

__all__ = ["StoreHealth", "check"]


def check(target: Context | Endpoints, stores: list[str] | None = None) -> list[StoreHealth]:
    """The health of ``stores`` (default: every store), in registry order, each followed by
    what serves it (PostgreSQL: PgBouncer's pools, when one pools it)."""
    return [_dictionaries(store, row) for store in context(target).stores(stores)
            for row in store.health_rows()]


def _dictionaries(store: Any, row: StoreHealth) -> StoreHealth:
    """A healthy ClickHouse is unhealthy when a dictionary does not load and answer
    (a dictionary that exists but cannot read its source is not fine)."""
    if row.store != "clickhouse" or not row.healthy or store.url is None:
        return row
    try:
        with clickhouse.connect(store.url, wait=HEALTH_WAIT) as client:
            problems = load_problems(client)
    except PlatformDBError as exc:
        problems = [f"the dictionaries cannot be checked: {exc}"]
    if problems:
        row.healthy, row.detail = False, problems[0]
        row.problems = [*row.problems, *problems]
    return row

"""The spec's key metrics of each store, as plain numbers.

PostgreSQL: connection count, query latency (pg_stat_statements when the
extension is installed), table sizes, index hit ratio, replication lag.
ClickHouse: query time, merges, disk and memory use.
Redis: memory, hit/miss ratio, command latency, evictions.

Every metric is a :class:`~platformdb.types.Metric` with a name, labels and a
value, so the same list prints as a table, as JSON, or as Prometheus text
(:mod:`platformdb.exporter`). Each store object computes its own
(:mod:`platformdb.stores`); this module loops over them.
"""

from __future__ import annotations

from platformdb.errors import PlatformDBError
from platformdb.stores import open_stores
from platformdb.types import Endpoints, Metric

__all__ = ["Metric", "collect"]


def collect(endpoints: Endpoints, stores: list[str] | None = None
            ) -> tuple[list[Metric], list[str]]:
    """Metrics of every reachable store, and one line per store that was not."""
    metrics: list[Metric] = []
    errors: list[str] = []
    for store in open_stores(endpoints, stores):
        if store.url is None:
            errors.append(f"{store.name}: {store.why_missing}")
            continue
        try:
            metrics.extend(store.metrics())
        except (PlatformDBError, OSError, ImportError) as exc:
            errors.append(f"{store.name}: {exc}")
        except Exception as exc:  # a store's driver error is reported, not fatal
            errors.append(f"{store.name}: {type(exc).__name__}: {exc}")
    return metrics, errors

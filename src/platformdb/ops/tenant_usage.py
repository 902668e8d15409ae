"""Per-tenant usage as metrics, for ``platformdb stats`` and the Prometheus exporter.

Label cardinality is bounded: only the ``top`` orgs by size (PostgreSQL plus
ClickHouse bytes, then rows) get a series of their own, labelled ``org`` =
their slug (their id when the organizations row is gone); every other org is
summed into one series labelled ``org="_other"`` (no slug can start with ``_``).
Names follow the exporter: ``platformdb_tenant_<store>_<rows|bytes|keys>``,
gauges, bytes in bytes (estimates: a table's size times the org's share of its
rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platformdb.types import Endpoints, Metric

if TYPE_CHECKING:
    from platformdb.ops.tenant import Tenant

DEFAULT_TOP = 20
OTHER = "_other"
_SERIES = (
    ("postgresql_rows", "rows of the org in PostgreSQL's tenant tables"),
    ("postgresql_bytes", "estimated bytes of the org's rows in PostgreSQL (table size times "
                         "its share of rows)"),
    ("clickhouse_rows", "rows of the org in ClickHouse's tables"),
    ("clickhouse_bytes", "estimated compressed bytes of the org's rows in ClickHouse"),
    ("redis_keys", "keys of the org in Redis (sessions, cache, rate limits, jobs)"),
)


def _values(tenant: Tenant) -> dict[str, int]:
    return {"postgresql_rows": tenant.total("postgresql"),
            "postgresql_bytes": tenant.total("postgresql", "bytes"),
            "clickhouse_rows": tenant.total("clickhouse"),
            "clickhouse_bytes": tenant.total("clickhouse", "bytes"),
            "redis_keys": sum(tenant.redis.values())}


def usage_metrics(endpoints: Endpoints, top: int = DEFAULT_TOP, *,
                  redis_prefix: str = "") -> list[Metric]:
    """Sizes of the ``top`` largest orgs, the rest summed as ``org="_other"``."""
    from platformdb.ops.tenant import list_tenants

    tenants = list_tenants(endpoints, redis_prefix=redis_prefix)
    values = {t.id: _values(t) for t in tenants}
    ranked = sorted(tenants, key=lambda t: (-(values[t.id]["postgresql_bytes"]
                                              + values[t.id]["clickhouse_bytes"]),
                                            -(values[t.id]["postgresql_rows"]
                                              + values[t.id]["clickhouse_rows"]), t.label))
    shown, rest = ranked[:max(top, 0)], ranked[max(top, 0):]
    metrics = [Metric("tenant", "orgs", float(len(tenants)),
                      "orgs with data in any store (all of them, not only the top N)")]
    for name, help_text in _SERIES:
        unit = "bytes" if name.endswith("_bytes") else ""
        for tenant in shown:
            metrics.append(Metric("tenant", name, float(values[tenant.id][name]), help_text,
                                  {"org": tenant.label}, unit=unit))
        if rest:
            metrics.append(Metric("tenant", name,
                                  float(sum(values[t.id][name] for t in rest)), help_text,
                                  {"org": OTHER}, unit=unit))
    return metrics

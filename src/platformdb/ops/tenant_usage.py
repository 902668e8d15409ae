"""Per-tenant usage as metrics, for ``platformdb stats`` and the Prometheus exporter.

Label cardinality is bounded: only the ``top`` orgs by size (bytes in every
store, then rows) get a series of their own, labelled ``org`` =
their slug (their id when the organizations row is gone); every other org is
summed into one series labelled ``org="_other"`` (no slug can start with ``_``).
Names follow the exporter: ``platformdb_tenant_<store>_<rows|bytes|keys>``,
gauges, bytes in bytes (estimates: a table's size times the org's share of its
rows).
"""

from __future__ import annotations

from platformdb.ops.context import Context
from platformdb.ops.tenant import Tenant, list_tenants
from platformdb.types import Endpoints, Metric

DEFAULT_TOP = 20
OTHER = "_other"


def _series(tenant: Tenant) -> dict[str, tuple[int, str]]:
    """Each series of ``tenant``: its value and help, from what each store counts."""
    found: dict[str, tuple[int, str]] = {}
    for store, unit in tenant.units.items():
        if unit == "keys":
            found[f"{store}_keys"] = (tenant.total(store), f"keys of the org in {store}")
            continue
        found[f"{store}_rows"] = (tenant.total(store), f"rows of the org in {store}'s tables")
        found[f"{store}_bytes"] = (tenant.total(store, "bytes"),
                                   f"estimated bytes of the org's rows in {store} (table size "
                                   "times its share of rows)")
    return found


def usage_metrics(target: Context | Endpoints, top: int = DEFAULT_TOP, *,
                  redis_prefix: str = "") -> list[Metric]:
    """Sizes of the ``top`` largest orgs, the rest summed as ``org="_other"``."""
    tenants = list_tenants(target, redis_prefix=redis_prefix)
    series = {t.id: _series(t) for t in tenants}

    def weight(tenant: Tenant, what: str) -> int:
        return sum(value for name, (value, _) in series[tenant.id].items()
                   if name.endswith(f"_{what}"))

    ranked = sorted(tenants, key=lambda t: (-weight(t, "bytes"), -weight(t, "rows"), t.label))
    shown, rest = ranked[:max(top, 0)], ranked[max(top, 0):]
    metrics = [Metric("tenant", "orgs", float(len(tenants)),
                      "orgs with data in any store (all of them, not only the top N)")]
    names = dict.fromkeys(name for t in tenants for name in series[t.id])
    for name in names:
        unit = "bytes" if name.endswith("_bytes") else ""
        help_text = next(series[t.id][name][1] for t in tenants if name in series[t.id])
        for tenant in shown:
            metrics.append(Metric("tenant", name, float(series[tenant.id].get(name, (0, ""))[0]),
                                  help_text, {"org": tenant.label}, unit=unit))
        if rest:
            metrics.append(Metric("tenant", name,
                                  float(sum(series[t.id].get(name, (0, ""))[0] for t in rest)),
                                  help_text, {"org": OTHER}, unit=unit))
    return metrics

"""Per-tenant usage metrics: bounded to the top N orgs, named as the exporter names things."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from platformdb import binaries
from platformdb.ops import exporter, stats, tenant, tenant_usage
from platformdb.types import Metric
from tests.ops.tenant.conftest import Deployment, add_clickhouse_rows, add_org

PROMTOOL = binaries.promtool()


def small_org(dep: Deployment, slug: str, campaigns: int) -> str:
    org = str(uuid.uuid4())
    with dep.pg() as conn, conn.transaction():
        conn.execute("SELECT set_tenant(%s)", (org,))
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)",
                     (org, slug, slug))
        conn.execute("INSERT INTO campaigns (org_id, name) SELECT %s, 'c' || n"
                     " FROM generate_series(1, %s) n", (org, campaigns))
    add_clickhouse_rows(dep, org, campaigns * 10)
    return org


def series(metrics: list[Metric], name: str) -> dict[str, float]:
    return {m.labels["org"]: m.value for m in metrics if m.name == name}


@pytest.mark.slow
def test_only_the_top_orgs_get_series_and_the_rest_is_summed(deployment: Deployment) -> None:
    for i in range(7):
        small_org(deployment, f"org-{i}", campaigns=(i + 1) * 5)
    metrics = tenant_usage.usage_metrics(deployment.endpoints, top=3,
                                         redis_prefix=deployment.prefix)
    assert {m.store for m in metrics} == {"tenant"}
    rows = series(metrics, "postgresql_rows")
    assert set(rows) == {"org-6", "org-5", "org-4", "_other"}  # the largest three
    everything = tenant.list_tenants(deployment.endpoints, redis_prefix=deployment.prefix)
    assert sum(rows.values()) == sum(t.total("postgresql") for t in everything)
    for name in ("postgresql_bytes", "clickhouse_rows", "clickhouse_bytes", "redis_keys"):
        assert len(series(metrics, name)) == 4, name
    assert [m.value for m in metrics if m.name == "orgs"] == [7]
    assert all(m.unit == "bytes" for m in metrics if m.name.endswith("_bytes"))
    assert len(tenant_usage.usage_metrics(deployment.endpoints, top=20,
                                    redis_prefix=deployment.prefix)) == 1 + 5 * 7


class Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self):  # type: ignore[no-untyped-def]
        yield from exporter.families(self.metrics)


@pytest.mark.slow
@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_usage_metrics_pass_promtool(deployment: Deployment) -> None:
    add_org(deployment, "alpha")
    small_org(deployment, "bravo", 3)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(tenant_usage.usage_metrics(deployment.endpoints, top=1,
                                                 redis_prefix=deployment.prefix)))
    text = generate_latest(registry).decode()
    assert 'platformdb_tenant_postgresql_rows{org="alpha"}' in text
    assert 'platformdb_tenant_clickhouse_bytes{org="_other"}' in text
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


@pytest.mark.slow
def test_stats_reads_tenant_usage_as_one_source(deployment: Deployment) -> None:
    add_org(deployment, "alpha")
    config = stats.StatsConfig(redis_prefix=deployment.prefix, tenant_top=5)
    [result] = stats.run(deployment.endpoints, ["postgresql"], config,
                         [s for s in stats.sources() if s.name == "tenant_usage"])
    assert result.error is None
    assert series(result.metrics, "redis_keys")["alpha"] > 0

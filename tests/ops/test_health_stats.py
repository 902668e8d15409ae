"""Health exit codes, the key metrics, and the Prometheus exporter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from platformdb import embedded
from platformdb.migrate import Migrator
from platformdb.ops.exporter import render
from platformdb.ops.stats import collect
from platformdb.stores.redis.driver import RedisDriver, migrations
from platformdb.types import Endpoints

REPO = Path(__file__).resolve().parents[2]


def health(env: dict[str, str], *stores: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    args = [sys.executable, "-m", "platformdb.cli", "health"]
    for store in stores:
        args += ["--store", store]
    return subprocess.run(args, env={**base, **env}, cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def migrate_redis(url: str) -> None:
    driver = RedisDriver(url)
    Migrator(driver, migrations()).up()
    driver.close()


@pytest.mark.slow
def test_health_exits_1_while_a_store_is_down_and_0_when_it_is_back(
        migrated_url: str, cluster_dir: Path) -> None:
    server = embedded.EmbeddedRedis(cluster_dir)
    server.start()
    env = {"PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_REDIS_URL": server.url()}
    try:
        assert health(env, "postgresql", "redis").returncode == 1  # no functions library yet
        migrate_redis(server.url())
        assert health(env, "postgresql", "redis").returncode == 0
        server.stop()
        down = health(env, "postgresql", "redis")
        assert down.returncode == 1
        assert "redis" in down.stderr and "did not answer PING" in down.stderr
        server.start()
        migrate_redis(server.url())  # a server restarted empty needs `migrate up`
        assert health(env, "postgresql", "redis").returncode == 0
    finally:
        server.stop()


@pytest.mark.slow
def test_health_reports_pending_migrations_as_unhealthy(pg_url: str) -> None:
    result = health({"PLATFORMDB_POSTGRES_URL": pg_url}, "postgresql")
    assert result.returncode == 1
    assert "not applied, first 001_init_schema (pending)" in result.stderr


@pytest.mark.slow
def test_health_does_not_start_the_embedded_stack(cluster_dir: Path) -> None:
    (cluster_dir / "stopped").mkdir()  # a stack's folder, its servers down
    result = health({"PLATFORMDB_HOME": str(cluster_dir / "stopped")}, "postgresql", "redis")
    assert result.returncode == 1
    assert "not running" in result.stdout + result.stderr
    assert "run `platformdb up`" in result.stderr
    assert not (cluster_dir / "stopped" / "postgres").exists()
    nothing = health({"PLATFORMDB_HOME": str(cluster_dir / "never-started")}, "postgresql")
    assert nothing.returncode == 2 and "no embedded stack at" in nothing.stderr
    assert not (cluster_dir / "never-started").exists()


PG_METRICS = {"connections", "index_hit_ratio", "table_size_bytes", "query_mean_latency_seconds",
              "replicas", "replication_lag_max_seconds"}
REDIS_METRICS = {"memory_used_bytes", "hit_ratio", "command_latency_seconds", "evicted_keys"}


@pytest.mark.slow
def test_stats_return_numbers_for_every_listed_metric(migrated_url: str, redis_url: str,
                                                      tmp_path: Path) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=redis_url)
    metrics, errors = collect(found, ["postgresql", "redis"])
    assert errors == []
    names = {(m.store, m.name) for m in metrics}
    assert {("postgresql", n) for n in PG_METRICS} <= names
    assert {("redis", n) for n in REDIS_METRICS} <= names
    sizes = {m.labels["table"] for m in metrics if m.name == "table_size_bytes"}
    assert {"campaigns", "campaign_metrics", "audit_logs"} <= sizes
    assert all(isinstance(m.value, float) and m.value >= 0 for m in metrics)


@pytest.mark.slow
def test_exporter_output_parses_as_prometheus_text(migrated_url: str, redis_url: str,
                                                   tmp_path: Path) -> None:
    text = render(Endpoints(postgres=migrated_url, clickhouse=f"chdb://{tmp_path}/ch",
                            redis=redis_url))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "platformdb_postgresql_connections" in families
    assert "platformdb_redis_memory_used_bytes" in families
    up = {s.labels["store"]: s.value for s in families["platformdb_up"].samples}
    assert up["postgresql"] == 1.0 and up["redis"] == 1.0


def test_exporter_marks_an_unreachable_store_down(tmp_path: Path) -> None:
    found = Endpoints(postgres="postgresql://x@127.0.0.1:1/db", clickhouse=None,
                      redis="redis://127.0.0.1:1/0")
    families = {f.name: f for f in text_string_to_metric_families(render(found))}
    up = {s.labels["store"]: s.value for s in families["platformdb_up"].samples}
    assert up["postgresql"] == 0.0 and up["redis"] == 0.0


@pytest.mark.parametrize("store", ["postgresql", "redis"])
@pytest.mark.slow
def test_stats_json_through_the_cli(store: str, migrated_url: str, redis_url: str) -> None:
    import json

    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    env = {**base, "PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_REDIS_URL": redis_url}
    result = subprocess.run([sys.executable, "-m", "platformdb.cli", "stats", "--json",
                             "--store", store], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["errors"] == [] and payload["metrics"]


CH_METRICS = {"query_time_avg_seconds", "merges_running", "merges", "disk_bytes", "memory_bytes"}


@pytest.mark.slow
def test_clickhouse_health_stats_and_ttl_state(tmp_path: Path) -> None:
    from platformdb.clickhouse import connect
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.stores.clickhouse.dictionaries import NOWHERE
    from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders
    from platformdb.stores.clickhouse.metrics import ttl_state

    url = f"chdb://{tmp_path / 'chdb'}"
    pending = health({"PLATFORMDB_CLICKHOUSE_URL": url, "PLATFORMDB_HOME": str(tmp_path)},
                     "clickhouse")
    assert pending.returncode == 1 and "migration(s) not applied" in pending.stderr
    with connect(url) as client:
        driver = ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE))
        Migrator(driver, discover(migrations_dir("clickhouse"))).up()
        ttl = ttl_state(client)
    assert ttl["campaign_metrics_raw"] == "timestamp + toIntervalDay(90)"
    assert ttl["api_logs"].endswith("toIntervalDay(30)")
    metrics, errors = collect(Endpoints(postgres=None, clickhouse=url, redis=None),
                              ["clickhouse"])
    assert errors == []
    assert {m.name for m in metrics} >= CH_METRICS
    assert all(m.value >= 0 for m in metrics)
    assert next(m.value for m in metrics if m.name == "disk_bytes") > 0
    migrated = health({"PLATFORMDB_CLICKHOUSE_URL": url, "PLATFORMDB_HOME": str(tmp_path)},
                      "clickhouse")
    # migrated, but the dictionaries read NOWHERE: health loads them, so it is red for them
    assert migrated.returncode == 1, migrated.stderr
    assert "dictionary campaigns_dict" in migrated.stdout + migrated.stderr
    assert "migration" not in migrated.stdout + migrated.stderr
    assert not (tmp_path / "postgres").exists(), "a ClickHouse health check started PostgreSQL"

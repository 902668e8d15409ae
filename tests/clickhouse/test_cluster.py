"""Cluster mode: ON CLUSTER, Replicated engines, Distributed tables sharded by org_id.

There is no cluster to run it on here, so the rendered DDL is checked the
way ClickHouse itself would first see it: every statement goes through
ClickHouse's parser (formatQuery, in chDB), and each table's columns in the
cluster rendering equal the single-node ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from platformdb.clickhouse import ClickHouse, render_cluster
from platformdb.lint.ch_syntax import split
from tests.clickhouse.conftest import MIGRATIONS, driver_for


def formatted(client: ClickHouse, sql: str) -> str:
    rows = client.rows("SELECT formatQuery({q:String})", {"q": sql})
    return str(rows[0][0])


def columns(create: str) -> dict[str, list[str]]:
    """table -> its column definitions, from formatQuery's canonical CREATE TABLE text."""
    found: dict[str, list[str]] = {}
    match = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?(\S+?)(?: ON CLUSTER \S+)?\n\((.*?)\n\)\n",
                     create, re.S)
    if match:
        found[match[1]] = [line.strip().rstrip(",") for line in match[2].splitlines()]
    return found


def test_cluster_ddl_parses_and_describes_the_same_columns(ch_empty: ClickHouse, stack_home: Path) -> None:
    single = driver_for(ch_empty, None, stack_home)
    cluster = driver_for(ch_empty, None, stack_home, cluster="analytics")
    single_cols: dict[str, list[str]] = {}
    cluster_cols: dict[str, list[str]] = {}
    distributed: dict[str, str] = {}
    for migration in MIGRATIONS:
        for sql in single.statements(migration.sql):
            single_cols.update(columns(formatted(ch_empty, sql)))
        rendered = cluster.statements(migration.sql)
        for sql in rendered:
            text = formatted(ch_empty, sql)  # raises if ClickHouse cannot parse it
            assert " ON CLUSTER analytics" in text, text
            cluster_cols.update(columns(text))
            dist = re.search(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER analytics AS (\w+)\n"
                             r"ENGINE = Distributed\(analytics, (\w+), (\w+), cityHash64\(org_id\)\)",
                             text)
            if dist:
                distributed[dist[1]] = dist[4]
        for sql in cluster.statements(migration.down_sql() or ""):
            assert " ON CLUSTER analytics" in formatted(ch_empty, sql)
    tables = set(single_cols)
    assert tables >= {"campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
                      "user_events", "api_logs"}
    for table in tables:
        assert cluster_cols[f"{table}_local"] == single_cols[table], table
        assert distributed[table] == f"{table}_local"


def test_engines_become_replicated_and_views_use_local_tables() -> None:
    sharded = {"campaign_metrics_raw", "campaign_metrics_hourly"}
    table = render_cluster(
        "CREATE TABLE IF NOT EXISTS campaign_metrics_hourly (hour DateTime, org_id UUID)"
        " ENGINE = SummingMergeTree() ORDER BY (org_id, hour)", "c1", "platform", sharded)
    assert "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}'," \
           " '{replica}')" in table
    view = render_cluster(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_metrics_hourly_mv TO campaign_metrics_hourly"
        " AS SELECT org_id FROM campaign_metrics_raw", "c1", "platform", sharded)
    assert "TO campaign_metrics_hourly_local" in view and "FROM campaign_metrics_raw_local" in view
    assert "campaign_metrics_hourly_mv ON CLUSTER `c1`" in view
    default = render_cluster("DROP TABLE IF EXISTS campaign_metrics_raw", sharded=sharded)
    assert [part.text for part in split(default)] == [
        "DROP TABLE IF EXISTS campaign_metrics_raw ON CLUSTER '{cluster}'",
        "DROP TABLE IF EXISTS campaign_metrics_raw_local ON CLUSTER '{cluster}'"]

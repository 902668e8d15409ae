"""Cluster and managed DDL from templates: ON CLUSTER, Replicated, Distributed, no regex renames.

There is no cluster to run it on here, so the rendered DDL is checked the
way ClickHouse itself would first see it: every statement goes through
ClickHouse's parser (formatQuery, in chDB), each table's columns in the
cluster rendering equal the single-node ones, and every Distributed table
comes after its local table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from hypothesis import given
from hypothesis import strategies as st

from platformdb.errors import MigrationError
from platformdb.lint import run_lint
from platformdb.stores.clickhouse.ddl import (
    Topology,
    check_order,
    cluster_edition,
    parse_errors,
    render,
    same_statements,
    split,
)
from tests.clickhouse.conftest import MIGRATIONS, driver_for

TOPOLOGIES = [Topology.single(), Topology.on_cluster(), Topology.on_cluster("analytics"),
              Topology.managed()]


def formatted(client: Client, sql: str) -> str:
    return str(client.query("SELECT formatQuery({q:String})", parameters={"q": sql})
               .result_rows[0][0])


def columns(create: str) -> dict[str, list[str]]:
    """table -> its column definitions, from formatQuery's canonical CREATE TABLE text."""
    found: dict[str, list[str]] = {}
    match = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?(\S+?)(?: ON CLUSTER \S+)?\n\((.*?)\n\)\n",
                     create, re.S)
    if match:
        found[match[1]] = [line.strip().rstrip(",") for line in match[2].splitlines()]
    return found


def test_migrations_written_before_templates_keep_their_applied_statements() -> None:
    """Checksums are of the file text: a cluster edition renders, for one node, exactly the
    statements of the migration it stands for."""
    editions = [m for m in MIGRATIONS if cluster_edition(m.path)]
    assert [m.version for m in editions] == [1, 2, 3]
    for migration in editions:
        edition = cluster_edition(migration.path)
        assert edition is not None
        assert same_statements(render(edition.read_text(), Topology.single(), {}),
                               split(migration.sql)), migration.label
        assert render(migration.sql, Topology.single(), {}) == split(migration.sql)


@pytest.mark.slow
def test_every_migration_renders_and_parses_for_every_topology(ch_empty: Client) -> None:
    known: set[str] = set()
    for migration in MIGRATIONS:
        for topology in TOPOLOGIES:
            driver = driver_for(ch_empty, None, topology)
            statements = driver.statements(migration, fill=False)
            down = driver.statements(migration, down=True, fill=False)
            errors = parse_errors([s.text for s in statements + down])
            assert errors == [None] * len(errors), (migration.label, topology.mode, errors)
            if topology.mode == "managed":
                assert not any("ON CLUSTER" in s.text for s in statements + down)
            if topology.clustered:
                assert all(" ON CLUSTER " in s.text for s in statements + down), migration.label
                assert all(" SYNC" in s.text for s in down if s.text.startswith("DROP"))
                check_order(statements, known)  # raises if a Distributed comes first
                known |= {m[1] for s in statements
                          if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s.text))}


def test_cluster_ddl_describes_the_same_columns(ch_empty: Client) -> None:
    single = driver_for(ch_empty, None, Topology.single())
    cluster = driver_for(ch_empty, None, Topology.on_cluster("analytics"))
    single_cols: dict[str, list[str]] = {}
    cluster_cols: dict[str, list[str]] = {}
    distributed: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for migration in MIGRATIONS:
        for statement in single.statements(migration):
            single_cols.update(columns(formatted(ch_empty, statement.text)))
        for statement in cluster.statements(migration):
            text = formatted(ch_empty, statement.text)
            cluster_cols.update(columns(text))
            order.extend(columns(text))
            dist = re.search(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER analytics AS (\w+)\n"
                             r"ENGINE = Distributed\('analytics', \w+, (\w+), (.+)\)", text)
            if dist:
                distributed[dist[1]] = (dist[3], dist[4])
                order.append(dist[1])
    tables = {t for t in single_cols if not t.startswith("platformdb_")}
    assert tables >= {"campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
                      "user_events", "api_logs", "user_events_daily", "api_logs_hourly"}
    for table in tables:
        assert cluster_cols[f"{table}_local"] == single_cols[table], table
        assert distributed[table] == (f"{table}_local", "cityHash64(org_id)")
        assert order.index(f"{table}_local") < order.index(table)


@pytest.mark.slow
def test_templates_render_replicated_engines_and_views_over_local_tables() -> None:
    text = ("CREATE TABLE IF NOT EXISTS {{ local(t) }}{{ on_cluster }} (org_id UUID, v UInt64)\n"
            "ENGINE = {{ engine(ReplacingMergeTree(v)) }} ORDER BY org_id;\n"
            "{{ distributed(t) }};\n"
            "CREATE MATERIALIZED VIEW IF NOT EXISTS mv{{ on_cluster }} TO {{ local(s) }}\n"
            "AS SELECT org_id, v FROM {{ local(t) }};\n"
            "{{ cluster_only }} ALTER TABLE t{{ on_cluster }} ADD COLUMN IF NOT EXISTS w UInt8;\n")
    single = [s.text for s in render(text, Topology.single())]
    assert single == [
        "CREATE TABLE IF NOT EXISTS t (org_id UUID, v UInt64)\n"
        "ENGINE = ReplacingMergeTree(v) ORDER BY org_id",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS mv TO s\nAS SELECT org_id, v FROM t"]
    assert [s.text for s in render(text, Topology.managed())] == single
    cluster = [s.text for s in render(text, Topology.on_cluster("c1", "platform"))]
    assert cluster == [
        "CREATE TABLE IF NOT EXISTS t_local ON CLUSTER 'c1' (org_id UUID, v UInt64)\n"
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}',"
        " '{replica}', v) ORDER BY org_id",
        "CREATE TABLE IF NOT EXISTS t ON CLUSTER 'c1' AS t_local\n"
        "ENGINE = Distributed('c1', platform, t_local, cityHash64(org_id))",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS mv ON CLUSTER 'c1' TO s_local\n"
        "AS SELECT org_id, v FROM t_local",
        "ALTER TABLE t ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS w UInt8"]
    assert parse_errors(cluster) == [None] * 4
    assert [s.text for s in render("{{ drop_table(t) }};", Topology.on_cluster())] == [
        "DROP TABLE IF EXISTS t ON CLUSTER '{cluster}' SYNC",
        "DROP TABLE IF EXISTS t_local ON CLUSTER '{cluster}' SYNC"]


def test_managed_clickhouse_refuses_statements_that_carry_on_cluster() -> None:
    text = "CREATE TABLE t ON CLUSTER 'x' (a UInt8) ENGINE = MergeTree ORDER BY a;"
    with pytest.raises(MigrationError, match=r"line 1: ON CLUSTER .* managed"):
        render(text, Topology.managed())
    assert len(render(text, Topology.single())) == 1
    # in quotes or comments it is not a clause
    assert len(render("SELECT 'ON CLUSTER' -- ON CLUSTER\n", Topology.managed())) == 1


def test_a_distributed_table_before_its_local_table_is_refused() -> None:
    text = ("CREATE TABLE t ON CLUSTER c AS t_local ENGINE = Distributed(c, db, t_local, rand());\n"
            "CREATE TABLE t_local ON CLUSTER c (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
    with pytest.raises(MigrationError, match="Distributed table t comes before its local table"):
        check_order(render(text, Topology.on_cluster()))
    check_order(render(text, Topology.on_cluster())[1:] + render(text, Topology.on_cluster())[:1])
    check_order(render(text, Topology.on_cluster())[:1], existing={"t_local"})


def test_unknown_or_malformed_placeholders_are_refused() -> None:
    with pytest.raises(MigrationError, match=r"line 2: unknown placeholder \{\{ rename \}\}"):
        render("SELECT 1;\nSELECT {{ rename(t) }};", Topology.single())
    with pytest.raises(MigrationError, match="not a table name"):
        render("SELECT * FROM {{ local(t - 1) }}", Topology.on_cluster())
    with pytest.raises(MigrationError, match="non-replicated MergeTree"):
        render("CREATE TABLE t (a UInt8) ENGINE = {{ engine(Log) }}", Topology.on_cluster())


names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


@given(table=names, view=names, key=st.sampled_from(["cityHash64(org_id)", "rand()"]))
def test_rendering_never_touches_names_it_was_not_asked_to(table: str, view: str,
                                                           key: str) -> None:
    """Only placeholders change: a name in the text that merely contains a table's name, or
    the table's name outside a placeholder, stays as written (no pattern renames)."""
    text = (f"CREATE TABLE IF NOT EXISTS {{{{ local({table}) }}}}{{{{ on_cluster }}}}"
            f" (org_id UUID) ENGINE = {{{{ engine(MergeTree()) }}}} ORDER BY org_id;\n"
            f"{{{{ distributed({table}, {key}) }}}};\n"
            f"CREATE VIEW {view}_{table}{{{{ on_cluster }}}} AS SELECT '{table}' AS {table}x"
            f" FROM {table};\n")
    cluster = render(text, Topology.on_cluster("c"))
    assert cluster[0].text.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER 'c'")
    assert cluster[1].text.endswith(f"{table}_local, {key})")
    assert cluster[2].text == (f"CREATE VIEW {view}_{table} ON CLUSTER 'c' AS SELECT '{table}'"
                               f" AS {table}x FROM {table}")
    single = render(text, Topology.single())
    assert [s.text for s in single][1] == (f"CREATE VIEW {view}_{table} AS SELECT '{table}'"
                                           f" AS {table}x FROM {table}")


@pytest.mark.slow
def test_lint_parses_every_rendering_and_checks_the_order(tmp_path: Path) -> None:
    folder = tmp_path / "clickhouse" / "migrations"
    folder.mkdir(parents=True)
    (folder / "001_t.sql").write_text(
        "-- 001_t: a table.\n"
        "CREATE TABLE IF NOT EXISTS {{ local(t) }}{{ on_cluster }} (org_id UUID)\n"
        "ENGINE = {{ engine(MergeTree()) }} ORDER BY org_id;\n{{ distributed(t) }};\n")
    (folder / "001_t.down.sql").write_text("{{ drop_table(t) }};\n")
    (folder / "002_bad.sql").write_text(
        "-- 002_bad: a Distributed table over a table that does not exist yet, a clause\n"
        "-- managed ClickHouse rejects, and a typo only the cluster rendering has.\n"
        "CREATE TABLE u ON CLUSTER c AS u_local ENGINE = Distributed(c, db, u_local, rand());\n"
        "{{ cluster_only }} ALTER TABLE t{{ on_cluster }} MODIFY SETTING;\n")
    (folder / "002_bad.down.sql").write_text("SELECT 1;\n")
    found = {(f.path, f.line, f.rule) for f in run_lint(tmp_path, rules=["clickhouse-syntax"])}
    assert found == {
        ("clickhouse/migrations/002_bad.sql", 3, "ch-template"),  # managed: ON CLUSTER
        ("clickhouse/migrations/002_bad.sql", 3, "ch-template"),  # order
        ("clickhouse/migrations/002_bad.sql", 4, "ch-syntax-cluster"),
    }
    rules = [f.message for f in run_lint(tmp_path, rules=["clickhouse-syntax"])]
    assert any("comes before its local table u_local" in m for m in rules)
    assert any("managed" in m for m in rules)

"""The ClickHouse stream's migration claims, each checked on chDB: the ledger is append-only
under every command; a failed migration undoes only what it created (never an adopted
table, even one it altered); drops are SYNC wherever tables are replicated; Distributed
tables come after their local tables or nothing runs; the runner lock waits a bounded time
and names its holder; and `migrate plan` sizes what ClickHouse statements rewrite."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.clickhouse.ddl import Topology
from platformdb.stores.clickhouse.driver import LEDGER, ClickHouseDriver
from tests.clickhouse.conftest import MIGRATIONS, driver_for, scalar, table_rows

TOPOLOGIES = [Topology.single(), Topology.on_cluster("analytics"), Topology.managed()]


def objects(client: Client) -> set[str]:
    return {str(r[0]) for r in table_rows(
        client, "SELECT name FROM system.tables WHERE database = currentDatabase()"
                " AND name NOT LIKE 'platformdb_%'")}


def copy_with(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS[0].path.parent, folder)
    for name, text in files.items():
        (folder / name.replace("NNN", f"{len(MIGRATIONS) + 1:03d}")).write_text(text)
    return folder


@pytest.mark.slow
def test_the_ledger_is_append_only_under_every_command(ch_empty: Client, pg: str,
                                                       tmp_path: Path) -> None:
    folder = copy_with(tmp_path, {
        "NNN_fails.sql": "-- fails at run time\n"
                         "CREATE TABLE IF NOT EXISTS probe (a UInt8) ENGINE = MergeTree"
                         " ORDER BY a;\n"
                         "INSERT INTO probe SELECT throwIf(1, 'boom');\n",
        "NNN_fails.down.sql": "DROP TABLE IF EXISTS probe SYNC;\n"})
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    history: list[list[tuple[object, ...]]] = []

    def ledger() -> list[tuple[object, ...]]:
        return table_rows(ch_empty, f"SELECT * FROM {LEDGER} ORDER BY seq")

    migrator.up(target=len(MIGRATIONS))
    history.append(ledger())
    migrator.down()
    history.append(ledger())
    with pytest.raises(MigrationError):
        migrator.up()
    history.append(ledger())
    migrator.drift()
    history.append(ledger())
    for before, after in itertools.pairwise(history):
        assert after[:len(before)] == before  # rows are only ever added
    assert len(history[1]) == len(history[0]) + 1  # the down is a row of its own
    assert len(history[2]) == len(history[1]) + 1  # the last one again; the failed one: none
    assert history[3] == history[2]
    assert scalar(ch_empty, "SELECT count() FROM system.mutations WHERE database ="
                            " currentDatabase() AND table = {t:String}", {"t": LEDGER}) == 0


@pytest.mark.slow
def test_a_failed_migration_never_drops_an_adopted_table_even_one_it_altered(
        ch_empty: Client, pg: str, tmp_path: Path) -> None:
    """CREATE ... IF NOT EXISTS adopted `keep`, then ALTERed it, then failed: the ALTER is
    undone, the down file's DROP of `keep` is not run (the run did not create it)."""
    folder = copy_with(tmp_path, {
        "NNN_adopt_alter.sql": "-- adopts keep, alters it, creates fresh, then fails\n"
                               "CREATE TABLE IF NOT EXISTS keep (a UInt8) ENGINE = MergeTree"
                               " ORDER BY a;\n"
                               "ALTER TABLE keep ADD COLUMN IF NOT EXISTS b UInt8;\n"
                               "CREATE TABLE IF NOT EXISTS fresh (a UInt8) ENGINE = MergeTree"
                               " ORDER BY a;\n"
                               "ALTER TABLE nope MODIFY SETTING x = 1;\n",
        "NNN_adopt_alter.down.sql": "DROP TABLE IF EXISTS fresh SYNC;\n"
                                    "ALTER TABLE keep DROP COLUMN IF EXISTS b;\n"
                                    "DROP TABLE IF EXISTS keep SYNC;\n"})
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    migrator.up(target=len(MIGRATIONS))
    ch_empty.command("CREATE TABLE keep (a UInt8) ENGINE = MergeTree ORDER BY a")
    ch_empty.command("INSERT INTO keep VALUES (7)")
    with pytest.raises(MigrationError, match=r"failed at statement 4"):
        migrator.up()
    assert "fresh" not in objects(ch_empty)
    assert scalar(ch_empty, "SELECT sum(a) FROM keep") == 7  # data and all
    columns = [r[0] for r in table_rows(ch_empty, "SELECT name FROM system.columns WHERE"
                                                  " database = currentDatabase() AND"
                                                  " table = 'keep'")]
    assert columns == ["a"]  # the ALTER it made is undone
    assert len(MIGRATIONS) + 1 not in [r.version for r in migrator.driver.applied()]


def test_every_drop_is_sync_where_tables_are_replicated(ch_empty: Client) -> None:
    drops = re.compile(r"^\s*DROP\s+(TABLE|VIEW|DICTIONARY)\b", re.I)
    for migration in MIGRATIONS:
        driver = driver_for(ch_empty, None, Topology.on_cluster("analytics"))
        for statement in driver.statements(migration, fill=False) + driver.statements(
                migration, down=True, fill=False):
            if drops.match(statement.text):
                assert re.search(r"\bSYNC\s*$", statement.text), (migration.label,
                                                                  statement.text)
                assert " ON CLUSTER 'analytics'" in statement.text


def test_a_distributed_table_before_its_local_table_stops_everything(
        ch_empty: Client, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "001_wrong_order.sql").write_text(
        "-- the Distributed table first: refused before anything runs\n"
        "CREATE TABLE IF NOT EXISTS t ON CLUSTER 'c' AS t_local"
        " ENGINE = Distributed('c', db, t_local, rand());\n"
        "CREATE TABLE IF NOT EXISTS t_local ON CLUSTER 'c' (a UInt8) ENGINE = MergeTree"
        " ORDER BY a;\n")
    (folder / "001_wrong_order.down.sql").write_text("DROP TABLE IF EXISTS t SYNC;\n")
    driver = ClickHouseDriver(ch_empty, {}, Topology.on_cluster("c", str(ch_empty.database)))
    with pytest.raises(MigrationError, match="Distributed table t comes before its local table"):
        Migrator(driver, discover(folder)).up()
    assert objects(ch_empty) == set()
    assert driver.applied() == []


def test_the_clickhouse_runner_lock_waits_a_bounded_time_and_names_its_holder(
        ch_empty: Client) -> None:
    first = ClickHouseDriver(ch_empty, {}, options=MigrateOptions(runner_wait_s=5))
    second = ClickHouseDriver(ch_empty, {}, options=MigrateOptions(runner_wait_s=0.4))
    with first.lock(), pytest.raises(MigrationError) as failed, second.lock():
        pass
    message = str(failed.value)
    assert "another runner still holds the ClickHouse migration lock" in message
    assert "after 0.4 s" in message and " pid " in message and "since" in message
    with second.lock():  # released: the next runner gets it at once
        pass


@pytest.mark.slow
def test_plan_sizes_what_clickhouse_statements_rewrite(ch: Client, pg: str,
                                                       tmp_path: Path) -> None:
    ch.command("INSERT INTO api_logs (org_id, timestamp, method, path, status_code,"
               " duration_ms) SELECT generateUUIDv4(), now() - number, 'GET', '/x', 200, 1"
               " FROM numbers(5000)")
    folder = copy_with(tmp_path, {
        "NNN_heavy.sql": "-- what a plan must flag\n"
                         "ALTER TABLE api_logs ADD COLUMN IF NOT EXISTS note String;\n"
                         "ALTER TABLE api_logs UPDATE duration_ms = 2 WHERE 1;\n"
                         "ALTER TABLE api_logs MODIFY COLUMN note LowCardinality(String);\n"
                         "ALTER TABLE api_logs MODIFY COLUMN note COMMENT 'free text';\n"
                         "OPTIMIZE TABLE api_logs FINAL;\n"
                         "ALTER TABLE api_logs MODIFY TTL toDateTime(timestamp)"
                         " + INTERVAL 7 DAY;\n",
        "NNN_heavy.down.sql": "ALTER TABLE api_logs DROP COLUMN IF EXISTS note;\n"})
    plan = Migrator(driver_for(ch, pg), discover(folder)).plan()[-1]
    verdicts = [(s.lock, s.severity) for s in plan.statements]
    assert verdicts == [("metadata", "ok"), ("mutation", "danger"), ("mutation", "danger"),
                        ("metadata", "ok"), ("merge", "danger"), ("mutation", "danger")]
    mutation = plan.statements[1]
    assert mutation.targets[0].rows == 5000 and mutation.targets[0].bytes > 0
    assert "a mutation: rewrites the parts of api_logs" in mutation.why[0]


@pytest.mark.slow
def test_the_recorded_schema_state_is_metadata_not_ledger_rows(ch: Client, pg: str) -> None:
    """The fingerprint lives in the ledger's table comment: recording it adds no row and no
    mutation, and any text survives the round trip."""
    driver = driver_for(ch, pg)
    rows = scalar(ch, f"SELECT count() FROM {LEDGER}")
    note = "it's a \\ backslash, a 'quote' and \"double\" ones"
    driver.record_schema_state(None, 6, note)
    state = driver.schema_state()
    assert state is not None and state.fingerprint is None and state.note == note
    assert scalar(ch, f"SELECT count() FROM {LEDGER}") == rows
    assert scalar(ch, "SELECT count() FROM system.mutations WHERE database = currentDatabase()"
                      " AND table = {t:String}", {"t": LEDGER}) == 0

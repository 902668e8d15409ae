"""ClickHouse migrations: same engine, same rules as PostgreSQL; an append-only ledger."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from platformdb.stores.clickhouse.ddl import Topology, render
from platformdb.stores.clickhouse.dictionaries import collection_name
from platformdb.stores.clickhouse.driver import LEDGER
from tests.clickhouse.conftest import MIGRATIONS, driver_for, scalar, table_rows

TABLES = {"campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
          "user_events", "api_logs", "user_events_daily", "api_logs_hourly"}


def objects(client: Client) -> dict[str, str]:
    return {str(name): str(engine) for name, engine in table_rows(
        client, "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
                " AND name NOT LIKE 'platformdb_%'")}


@pytest.mark.slow
def test_up_creates_tables_views_and_dictionaries(ch: Client) -> None:
    found = objects(ch)
    assert set(found) >= TABLES
    assert found["campaign_metrics_hourly"] == "SummingMergeTree"
    assert found["campaign_metrics_hourly_mv"] == "MaterializedView"
    assert found["organizations_dict"] == "Dictionary"


@pytest.mark.slow
def test_ttl_clauses_have_the_retention_of_each_table(ch: Client) -> None:
    create = dict(table_rows(ch, "SELECT name, create_table_query FROM system.tables"
                                 " WHERE database = currentDatabase()"))
    expected = {
        "campaign_metrics_raw": "timestamp + toIntervalDay(90)",
        "campaign_metrics_hourly": "hour + toIntervalDay(400)",
        "campaign_metrics_daily": "date + toIntervalYear(5)",
        "user_events": "toDateTime(timestamp) + toIntervalDay(180)",
        "api_logs": "toDateTime(timestamp) + toIntervalDay(30)",
    }
    for table, ttl in expected.items():
        assert f"TTL {ttl}" in str(create[table]), create[table]


@pytest.mark.slow
def test_status_down_to_zero_and_up_again(ch_empty: Client, pg: str) -> None:
    driver = driver_for(ch_empty, pg)
    migrator = Migrator(driver, MIGRATIONS)
    migrator.up()
    first = driver.dump_schema()
    assert {row.state for row in migrator.status()} == {"applied"}
    for _ in MIGRATIONS:
        migrator.down()
    assert objects(ch_empty) == {}
    assert [row.state for row in migrator.status()] == ["pending"] * len(MIGRATIONS)
    migrator.up()
    assert driver.dump_schema() == first
    assert migrator.verify() == []


@pytest.mark.slow
def test_the_ledger_is_append_only(ch_empty: Client, pg: str) -> None:
    """Undoing a migration inserts a row; no ledger row is ever deleted or changed."""
    driver = driver_for(ch_empty, pg)
    migrator = Migrator(driver, MIGRATIONS)
    migrator.up()
    before = table_rows(ch_empty, f"SELECT * FROM {LEDGER} ORDER BY seq")
    migrator.down()
    migrator.down()
    migrator.up()
    after = table_rows(ch_empty, f"SELECT * FROM {LEDGER} ORDER BY seq")
    assert after[:len(before)] == before  # untouched
    last, previous = MIGRATIONS[-1], MIGRATIONS[-2]
    assert [(v, a) for _, v, _, a in driver.history()][len(before):] == [
        (last.version, "down"), (previous.version, "down"),
        (previous.version, "up"), (last.version, "up")]
    assert [r.version for r in driver.applied()] == [m.version for m in MIGRATIONS]
    mutations = scalar(ch_empty, "SELECT count() FROM system.mutations"
                                 " WHERE database = currentDatabase() AND table = {t:String}",
                       {"t": LEDGER})
    assert mutations == 0


@pytest.mark.slow
def test_a_ledger_from_before_append_only_keeps_working(ch_empty: Client, pg: str) -> None:
    ch_empty.command(f"CREATE TABLE {LEDGER} (version UInt32, name String, checksum String,"
                     " applied_at DateTime64(3, 'UTC'), duration_ms UInt32, applied_by String)"
                     " ENGINE = MergeTree ORDER BY version")
    driver = driver_for(ch_empty, pg)
    first = MIGRATIONS[0]
    for statement in driver.statements(first):
        ch_empty.command(statement.text)
    ch_empty.command(f"INSERT INTO {LEDGER} VALUES (1, {{n:String}}, {{c:String}}, now64(3),"
                     " 5, 'old')", parameters={"n": first.name, "c": first.checksum})
    assert [r.version for r in driver.applied()] == [1]
    migrator = Migrator(driver, MIGRATIONS)
    migrator.up()
    assert [r.version for r in driver.applied()] == [m.version for m in MIGRATIONS]
    migrator.down()
    assert [r.version for r in driver.applied()] == [m.version for m in MIGRATIONS[:-1]]


def normalised(create: str) -> str:
    """A CREATE query with its SETTINGS in a fixed order (ALTER ... MODIFY SETTING appends)."""
    head, _, settings = create.partition(" SETTINGS ")
    return head + (" SETTINGS " + ", ".join(sorted(settings.split(", "))) if settings else "")


def copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS[0].path.parent, folder)
    return folder


def next_number(folder: Path) -> str:
    return f"{len(discover(folder)) + 1:03d}"


@pytest.mark.slow
def test_a_failing_migration_is_undone_and_not_recorded(ch_empty: Client, pg: str,
                                                         tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    n = next_number(folder)
    (folder / f"{n}_broken.sql").write_text(
        f"-- {n}_broken: the second statement fails at run time.\n"
        "CREATE TABLE IF NOT EXISTS probe (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "INSERT INTO probe SELECT throwIf(1, 'boom');\n")
    (folder / f"{n}_broken.down.sql").write_text("DROP TABLE IF EXISTS probe;\n")
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    with pytest.raises(MigrationError, match=rf"{n}_broken.sql failed .*probe.* was undone"):
        migrator.up()
    assert "probe" not in objects(ch_empty)
    assert [r.version for r in migrator.driver.applied()] == list(range(1, int(n)))


@pytest.mark.slow
def test_a_failed_migration_never_drops_a_table_it_did_not_create(
        ch_empty: Client, pg: str, tmp_path: Path) -> None:
    """IF NOT EXISTS adopts an existing table; the down file would drop it with its data."""
    folder = copy_migrations(tmp_path)
    n = next_number(folder)
    (folder / f"{n}_adopts.sql").write_text(
        f"-- {n}_adopts: creates keep (already there) and fresh, then fails.\n"
        "CREATE TABLE IF NOT EXISTS keep (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "CREATE TABLE IF NOT EXISTS fresh (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "ALTER TABLE keep_settings MODIFY SETTING nope = 1;\n")
    (folder / f"{n}_adopts.down.sql").write_text(
        "DROP TABLE IF EXISTS fresh;\nDROP TABLE IF EXISTS keep;\n")
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    migrator.up(target=int(n) - 1)
    ch_empty.command("CREATE TABLE keep (a UInt8) ENGINE = MergeTree ORDER BY a")
    ch_empty.command("INSERT INTO keep VALUES (7)")
    with pytest.raises(MigrationError, match=rf"{n}_adopts.sql failed at statement 3"):
        migrator.up()
    assert "fresh" not in objects(ch_empty)
    assert scalar(ch_empty, "SELECT sum(a) FROM keep") == 7  # still there, data and all
    assert int(n) not in [r.version for r in migrator.driver.applied()]


@pytest.mark.slow
def test_edited_applied_migration_and_bad_syntax_are_refused(
        ch_empty: Client, pg: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    migrator.up()
    first = folder / MIGRATIONS[0].path.name
    first.write_text(first.read_text() + "\n-- an edit\n")
    edited = Migrator(driver_for(ch_empty, pg), discover(folder))
    assert any("edited" in problem for problem in edited.verify())
    first.write_text(MIGRATIONS[0].sql)
    n = next_number(folder)
    (folder / f"{n}_bad.sql").write_text(
        f"-- {n}_bad: broken.\nCREATE TABLE x (a UInt8 ENGINE = Log;\n")
    (folder / f"{n}_bad.down.sql").write_text("DROP TABLE IF EXISTS x;\n")
    with pytest.raises(MigrationError, match=rf"{n}_bad\.sql:2"):
        Migrator(driver_for(ch_empty, pg), discover(folder)).up()


@pytest.mark.slow
def test_a_clickhouse_migration_without_down_file_is_refused(
        ch_empty: Client, pg: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    n = next_number(folder)
    (folder / f"{n}_nodown.sql").write_text(
        f"-- {n}_nodown: no down file.\n-- platformdb: no-down it is fine\n"
        "CREATE TABLE IF NOT EXISTS nd (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
    migrator = Migrator(driver_for(ch_empty, pg), discover(folder))
    with pytest.raises(MigrationError, match=r"need a \.down\.sql"):
        migrator.up()
    assert "nd" not in objects(ch_empty)


@pytest.mark.slow
def test_reference_ddl_files_are_what_the_migrations_build(ch: Client) -> None:
    """clickhouse/{tables,materialized-views,dictionaries}/ describe the migrated schema:
    each object built from them equals the one the migrations built, as ClickHouse prints it."""
    root = MIGRATIONS[0].path.parent.parent
    files = [p for folder in ("tables", "materialized-views", "dictionaries")
             for p in sorted((root / folder).glob("*.sql"))]
    assert len(files) >= 6
    migrated = str(ch.database)
    reference = f"{migrated}_ref"
    ch.command(f"CREATE DATABASE {reference}")
    values = {"dictionary_source": collection_name(migrated)}  # what the migrations used
    try:
        ch.database = reference
        for path in files:
            for statement in render(path.read_text(), Topology.single(), values):
                ch.command(statement.text)
    finally:
        ch.database = migrated

    def definitions(database: str) -> dict[str, str]:
        return {str(n): normalised(re.sub(rf"\b{database}\.", "", str(q))) for n, q in table_rows(
            ch, "SELECT name, create_table_query FROM system.tables WHERE database = {d:String}"
                " AND name NOT LIKE 'platformdb_%'", {"d": database})}

    try:
        built, expected = definitions(reference), definitions(migrated)
        assert set(built) == set(expected)
        for name, query in expected.items():
            assert built[name] == query, name
    finally:
        ch.command(f"DROP DATABASE IF EXISTS {reference} SYNC")

"""ClickHouse migrations: same engine, same rules as PostgreSQL."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from platformdb.clickhouse import ClickHouse
from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from tests.clickhouse.conftest import MIGRATIONS, driver_for

TABLES = {"campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
          "user_events", "api_logs", "user_events_daily", "api_logs_hourly"}


def objects(client: ClickHouse) -> dict[str, str]:
    return {name: engine for name, engine in client.rows(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
        " AND name NOT LIKE 'platformdb_%'")}


def test_up_creates_tables_views_and_dictionaries(ch: ClickHouse) -> None:
    found = objects(ch)
    assert set(found) >= TABLES
    assert found["campaign_metrics_hourly"] == "SummingMergeTree"
    assert found["campaign_metrics_hourly_mv"] == "MaterializedView"
    assert found["organizations_dict"] == "Dictionary"


def test_ttl_clauses_have_the_retention_of_each_table(ch: ClickHouse) -> None:
    create = dict(ch.rows("SELECT name, create_table_query FROM system.tables"
                          " WHERE database = currentDatabase()"))
    expected = {
        "campaign_metrics_raw": "timestamp + toIntervalDay(90)",
        "campaign_metrics_hourly": "hour + toIntervalDay(400)",
        "campaign_metrics_daily": "date + toIntervalYear(5)",
        "user_events": "toDateTime(timestamp) + toIntervalDay(180)",
        "api_logs": "toDateTime(timestamp) + toIntervalDay(30)",
    }
    for table, ttl in expected.items():
        assert f"TTL {ttl}" in create[table], create[table]


def test_status_down_to_zero_and_up_again(ch_empty: ClickHouse, pg: str, stack_home: Path) -> None:
    driver = driver_for(ch_empty, pg, stack_home)
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


def copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS[0].path.parent, folder)
    return folder


def test_a_failing_migration_is_undone_and_not_recorded(ch_empty: ClickHouse, pg: str,
                                                         stack_home: Path, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    (folder / "004_broken.sql").write_text(
        "-- 004_broken: the second statement fails at run time.\n"
        "CREATE TABLE IF NOT EXISTS probe (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "INSERT INTO probe SELECT throwIf(1, 'boom');\n")
    (folder / "004_broken.down.sql").write_text("DROP TABLE IF EXISTS probe;\n")
    migrator = Migrator(driver_for(ch_empty, pg, stack_home), discover(folder))
    with pytest.raises(MigrationError, match=r"004_broken.sql failed .*undone"):
        migrator.up()
    assert "probe" not in objects(ch_empty)
    assert [r.version for r in migrator.driver.applied()] == [1, 2, 3]


def test_edited_applied_migration_and_bad_syntax_are_refused(
        ch_empty: ClickHouse, pg: str, stack_home: Path, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    migrator = Migrator(driver_for(ch_empty, pg, stack_home), discover(folder))
    migrator.up()
    first = folder / MIGRATIONS[0].path.name
    first.write_text(first.read_text() + "\n-- an edit\n")
    edited = Migrator(driver_for(ch_empty, pg, stack_home), discover(folder))
    assert any("edited" in problem for problem in edited.verify())
    first.write_text(MIGRATIONS[0].sql)
    (folder / "004_bad.sql").write_text("-- 004_bad: broken.\nCREATE TABLE x (a UInt8 ENGINE = Log;\n")
    (folder / "004_bad.down.sql").write_text("DROP TABLE IF EXISTS x;\n")
    with pytest.raises(MigrationError, match=r"004_bad\.sql:2"):
        Migrator(driver_for(ch_empty, pg, stack_home), discover(folder)).up()


def test_a_clickhouse_migration_without_down_file_is_refused(
        ch_empty: ClickHouse, pg: str, stack_home: Path, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    (folder / "004_nodown.sql").write_text(
        "-- 004_nodown: no down file.\n-- platformdb: no-down it is fine\n"
        "CREATE TABLE IF NOT EXISTS nd (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
    migrator = Migrator(driver_for(ch_empty, pg, stack_home), discover(folder))
    with pytest.raises(MigrationError, match="need a .down.sql"):
        migrator.up()
    assert "nd" not in objects(ch_empty)


def test_reference_ddl_files_match_the_migrations() -> None:
    def normalise(text: str) -> str:
        code = (line for line in text.splitlines() if not line.lstrip().startswith("--"))
        return re.sub(r"\s+", " ", " ".join(code)).strip()

    migrations = normalise("\n".join(m.sql for m in MIGRATIONS))
    root = MIGRATIONS[0].path.parent.parent
    files = sorted(p for folder in ("tables", "materialized-views", "dictionaries")
                   for p in (root / folder).glob("*.sql"))
    assert len(files) >= 6
    for path in files:
        assert normalise(path.read_text()) in migrations, f"{path.name} differs from the migrations"

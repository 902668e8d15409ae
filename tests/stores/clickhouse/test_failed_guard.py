"""A ClickHouse migration that fails on a guard ``SELECT`` is undone (issue 19, item 7).

chDB kept the header of a failed ``command()`` and prepended it to the next reply,
so the undo that followed failed and the migration's table and column stayed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse import ClickHouseError, command, rows
from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from tests.clickhouse.conftest import driver_for


def test_the_client_answers_after_a_failed_select(ch_empty: Client) -> None:
    for _ in range(2):
        with pytest.raises(ClickHouseError, match="guard"):
            command(ch_empty, "SELECT throwIf(1, 'guard')")
        assert rows(ch_empty, "SELECT 42 AS answer") == [(42,)]
        assert ch_empty.command("SELECT 'ok'") == "ok"


def columns(client: Client, table: str) -> list[str]:
    return [str(name) for (name,) in rows(
        client, "SELECT name FROM system.columns WHERE database = currentDatabase()"
                " AND table = {t:String} ORDER BY position", {"t": table})]


def tables(client: Client) -> set[str]:
    return {str(name) for (name,) in rows(
        client, "SELECT name FROM system.tables WHERE database = currentDatabase()")}


def test_a_migration_failing_on_a_guard_select_is_undone(ch_empty: Client,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_base.sql").write_text(
        "-- 001_base: a table the next migration alters.\n"
        "CREATE TABLE base (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
    (folder / "001_base.down.sql").write_text("DROP TABLE IF EXISTS base;\n")
    (folder / "002_guarded.sql").write_text(
        "-- 002_guarded: creates, alters, then a guard refuses to go on.\n"
        "CREATE TABLE fresh (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "ALTER TABLE base ADD COLUMN b UInt8 DEFAULT 0;\n"
        "SELECT throwIf(count() = 0, 'base must not be empty') FROM base;\n")
    (folder / "002_guarded.down.sql").write_text(
        "ALTER TABLE base DROP COLUMN IF EXISTS b;\nDROP TABLE IF EXISTS fresh;\n")
    migrator = Migrator(driver_for(ch_empty, None), discover(folder))
    with pytest.raises(MigrationError, match=r"002_guarded.sql failed at statement 3.*undone"):
        migrator.up()
    assert "fresh" not in tables(ch_empty)
    assert columns(ch_empty, "base") == ["a"]
    assert [r.version for r in migrator.driver.applied()] == [1]

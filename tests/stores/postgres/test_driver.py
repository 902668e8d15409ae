"""The migration engine on real PostgreSQL, with small migrations made per test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from platformdb.migrate.base import checksum
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.postgres.driver import LEDGER, PostgresDriver

BASE = {
    "001_create_items.sql": "-- items\nCREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY);",
    "001_create_items.down.sql": "DROP TABLE IF EXISTS items;",
    "002_add_name.sql": "-- names\nALTER TABLE items ADD COLUMN IF NOT EXISTS name text;",
    "002_add_name.down.sql": "ALTER TABLE items DROP COLUMN IF EXISTS name;",
}


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def driver(pg_url: str) -> Iterator[PostgresDriver]:
    drv = PostgresDriver(pg_url)
    yield drv
    drv.close()


def migrator(driver: PostgresDriver, folder: Path) -> Migrator:
    return Migrator(driver, discover(folder))


def columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position", (table,)).fetchall()
    return [r[0] for r in rows]


def ledger(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone() == (None,):
            return []
        query = f"SELECT version, checksum FROM {LEDGER} ORDER BY 1"
        return [tuple(r) for r in conn.execute(query)]


def test_up_applies_in_order_and_records_the_ledger(driver: PostgresDriver, pg_url: str,
                                                    tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    steps = migrator(driver, folder).up()
    assert [s.label for s in steps] == ["001_create_items", "002_add_name"]
    assert columns(pg_url, "items") == ["id", "name"]
    assert ledger(pg_url) == [(1, checksum(BASE["001_create_items.sql"])),
                              (2, checksum(BASE["002_add_name.sql"]))]
    assert migrator(driver, folder).up() == []
    rows = migrator(driver, folder).status()
    assert [(r.version, r.state) for r in rows] == [(1, "applied"), (2, "applied")]
    assert all(r.applied_by and "@" in r.applied_by for r in rows)


def test_failing_migration_leaves_schema_and_ledger_untouched(driver: PostgresDriver,
                                                              pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, {**BASE, "003_bad.sql":
                              "-- half good\nCREATE TABLE extra (id int);\nSELECT 1/0;"})
    with pytest.raises(MigrationError, match=r"003_bad.sql failed: line 3: division by zero"):
        migrator(driver, folder).up()
    assert [v for v, _ in ledger(pg_url)] == [1, 2]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('extra')").fetchone() == (None,)


def test_malformed_file_is_refused_before_anything_runs(driver: PostgresDriver, pg_url: str,
                                                        tmp_path: Path) -> None:
    folder = write(tmp_path, {**BASE, "003_typo.sql": "-- typo\nCREATE TABLEE nope (id int);"})
    with pytest.raises(MigrationError, match=r"003_typo.sql:2: syntax error at or near \"TABLEE\""):
        migrator(driver, folder).up()
    assert ledger(pg_url) == []
    assert columns(pg_url, "items") == []


def test_transaction_control_in_a_file_is_refused(driver: PostgresDriver, tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_tx.sql": "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;"})
    with pytest.raises(MigrationError, match="transaction control"):
        migrator(driver, folder).up()


def test_edited_applied_migration_is_refused(driver: PostgresDriver, pg_url: str,
                                             tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    migrator(driver, folder).up()
    (folder / "001_create_items.sql").write_text(BASE["001_create_items.sql"] + "\n-- edit\n")
    write(folder, {"003_more.sql": "CREATE TABLE more_items (id int);"})
    with pytest.raises(MigrationError,
                       match=r"001_create_items\.sql was edited after it was applied"):
        migrator(driver, folder).up()
    assert [v for v, _ in ledger(pg_url)] == [1, 2]
    assert any("edited" in p for p in migrator(driver, folder).verify())
    assert next(r.state for r in migrator(driver, folder).status()) == "edited"


def test_missing_applied_migration_is_refused(driver: PostgresDriver, tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    migrator(driver, folder).up()
    other = write(tmp_path / "other", {k: v for k, v in BASE.items() if k.startswith("001")})
    with pytest.raises(MigrationError, match="002_add_name is missing"):
        migrator(driver, other).up()
    assert [r.state for r in migrator(driver, other).status()] == ["applied", "missing"]


def test_down_reverts_the_last_migration_then_refuses_at_zero(driver: PostgresDriver,
                                                              pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    migrator(driver, folder).up()
    assert migrator(driver, folder).down().label == "002_add_name"
    assert columns(pg_url, "items") == ["id"]
    assert migrator(driver, folder).down().label == "001_create_items"
    assert ledger(pg_url) == []
    with pytest.raises(MigrationError, match="nothing to roll back"):
        migrator(driver, folder).down()


def test_down_refuses_without_a_down_file(driver: PostgresDriver, tmp_path: Path) -> None:
    folder = write(tmp_path,
                   {"001_a.sql": "-- platformdb: no-down drops nothing useful\nSELECT 1;"})
    migrator(driver, folder).up()
    with pytest.raises(MigrationError, match=r"has no down file \(drops nothing useful\)"):
        migrator(driver, folder).down()


def test_run_applies_exactly_one_in_order(driver: PostgresDriver, pg_url: str,
                                          tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    with pytest.raises(MigrationError, match="001_create_items must be applied before 002"):
        migrator(driver, folder).run(2)
    with pytest.raises(MigrationError, match="no migration numbered 007"):
        migrator(driver, folder).run(7)
    assert migrator(driver, folder).run(1).label == "001_create_items"
    assert [v for v, _ in ledger(pg_url)] == [1]
    with pytest.raises(MigrationError, match="already applied"):
        migrator(driver, folder).run(1)


def test_dry_run_changes_nothing(driver: PostgresDriver, pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    steps = migrator(driver, folder).up(dry_run=True)
    assert [s.label for s in steps] == ["001_create_items", "002_add_name"]
    assert all(s.duration_ms is None for s in steps)
    assert ledger(pg_url) == []
    assert columns(pg_url, "items") == []


def test_no_transaction_migration_runs_concurrently_safe_statements(
        driver: PostgresDriver, pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, {**BASE, "003_index.sql":
                              "-- platformdb: no-transaction\n"
                              "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_name"
                              " ON items (name);"})
    migrator(driver, folder).up()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('idx_items_name')").fetchone() != (None,)
    assert [v for v, _ in ledger(pg_url)] == [1, 2, 3]


def test_lock_timeout_makes_a_blocked_migration_give_up(pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, BASE)
    first = PostgresDriver(pg_url)
    Migrator(first, discover(folder)).run(1)
    first.close()
    blocked = PostgresDriver(pg_url, options=MigrateOptions(lock_retries=0),
                             lock_timeout="200ms")
    holder = psycopg.connect(pg_url)
    holder.execute("LOCK TABLE items IN ACCESS SHARE MODE")  # held until rollback
    try:
        started = time.monotonic()
        with pytest.raises(MigrationError, match=r"could not get its locks: 1 attempt"):
            Migrator(blocked, discover(folder)).up()
        assert time.monotonic() - started < 10
    finally:
        holder.rollback()
        holder.close()
        blocked.close()
    assert [v for v, _ in ledger(pg_url)] == [1]


@pytest.mark.slow
def test_concurrent_runners_apply_each_migration_once(pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, {**BASE, "003_slow.sql":
                              "-- slow\nSELECT pg_sleep(0.3);\nCREATE TABLE once_only (id int);"})
    applied: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        drv = PostgresDriver(pg_url)
        try:
            applied.extend(s.label for s in Migrator(drv, discover(folder)).up())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            drv.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == ["001_create_items", "002_add_name", "003_slow"]

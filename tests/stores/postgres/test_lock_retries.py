"""Lock-timeout retries and bounded runner waits, on real PostgreSQL.

A migration that cannot get its lock within ``lock_timeout`` gives up its place in the
queue, pauses and tries again; readers queued behind it wait at most ``lock_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.postgres.driver import LEDGER, LOCK_KEY, PostgresDriver
from tests.stores.postgres.test_driver import BASE, ledger, write

FAST = MigrateOptions(lock_timeout_ms=150, lock_retries=30, backoff_base_s=0.05,
                      backoff_cap_s=0.2, runner_wait_s=5)


@pytest.fixture
def items(pg_url: str, tmp_path: Path) -> Path:
    """A database with 001 (items) applied; 002 (ALTER TABLE items) still pending."""
    folder = write(tmp_path / "m", BASE)
    driver = PostgresDriver(pg_url)
    try:
        Migrator(driver, discover(folder)).run(1)
    finally:
        driver.close()
    return folder


class Holder:
    """Another session holding a lock on ``items`` in an open transaction."""

    def __init__(self, url: str, sql: str = "LOCK TABLE items IN ACCESS SHARE MODE") -> None:
        self.conn = psycopg.connect(url)
        self.conn.execute("SET application_name = 'nightly-report'")
        self.conn.execute(sql)
        self.pid = self.conn.info.backend_pid

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def holder(pg_url: str, items: Path) -> Iterator[Holder]:
    held = Holder(pg_url)
    yield held
    held.release()


@pytest.mark.slow
def test_a_blocked_migration_retries_and_applies_once_the_holder_ends(
        pg_url: str, items: Path, holder: Holder, caplog: pytest.LogCaptureFixture) -> None:
    holder.release_after(1.0)
    driver = PostgresDriver(pg_url, options=FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="platformdb.migrate"):
            steps = Migrator(driver, discover(items)).up()
    finally:
        driver.close()
    assert [s.label for s in steps] == ["002_add_name"]
    assert [v for v, _ in ledger(pg_url)] == [1, 2]
    attempts = driver.attempts["002_add_name"]
    assert attempts.count >= 3 and attempts.waited_s > 0
    logged = [r.getMessage() for r in caplog.records]
    assert any("002_add_name.sql: attempt 1 of 31 failed (lock_not_available" in m for m in logged)
    # each attempt names who held the lock it wanted
    assert any(f"pid {holder.pid}" in m and "nightly-report" in m for m in logged)


@pytest.mark.slow
def test_retries_give_up_after_their_budget_naming_the_holder(
        pg_url: str, items: Path, holder: Holder) -> None:
    options = FAST.with_overrides(lock_retries=2)
    driver = PostgresDriver(pg_url, options=options)
    try:
        with pytest.raises(MigrationError) as failed:
            Migrator(driver, discover(items)).up()
    finally:
        driver.close()
    message = str(failed.value)
    assert "002_add_name.sql could not get its locks: 3 attempt(s) of 150ms" in message
    assert f"pid {holder.pid}" in message and "nightly-report" in message
    assert "AccessShareLock on items" in message
    assert "nothing from it was applied" in message
    assert [v for v, _ in ledger(pg_url)] == [1]


@pytest.mark.slow
def test_the_time_budget_bounds_the_retries_too(pg_url: str, items: Path,
                                                holder: Holder) -> None:
    options = FAST.with_overrides(lock_retries=1000, retry_budget_s=0.8)
    driver = PostgresDriver(pg_url, options=options)
    started = time.monotonic()
    try:
        with pytest.raises(MigrationError, match="could not get its locks"):
            Migrator(driver, discover(items)).up()
    finally:
        driver.close()
    assert time.monotonic() - started < 3
    assert 1 < driver.attempts["002_add_name"].count < 1000


def test_a_statement_timeout_is_not_retried(pg_url: str, tmp_path: Path) -> None:
    folder = write(tmp_path, {"001_slow.sql": "-- slow\nSELECT pg_sleep(2);"})
    driver = PostgresDriver(pg_url, options=FAST, statement_timeout="200ms")
    try:
        with pytest.raises(MigrationError, match="canceling statement due to statement timeout"):
            Migrator(driver, discover(folder)).up()
    finally:
        driver.close()
    assert driver.attempts["001_slow"].count == 1


def test_a_deadlock_is_retried_and_the_retry_starts_from_scratch(pg_url: str,
                                                                 tmp_path: Path) -> None:
    """40P01 is retried like 55P03: the failed attempt rolled back, so the table it created
    is created again and the ledger gets one row."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE tries")
    folder = write(tmp_path, {"001_flaky.sql": (
        "-- fails with a deadlock on its first attempt\n"
        "CREATE TABLE made (id int);\n"
        "DO $$ BEGIN IF nextval('tries') = 1 THEN\n"
        "  RAISE EXCEPTION 'simulated' USING ERRCODE = 'deadlock_detected';\n"
        "END IF; END $$;\n")})
    driver = PostgresDriver(pg_url, options=FAST)
    try:
        Migrator(driver, discover(folder)).up()
    finally:
        driver.close()
    assert driver.attempts["001_flaky"].count == 2
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT last_value FROM tries").fetchone() == (2,)
        assert conn.execute("SELECT to_regclass('made')").fetchone() != (None,)
        assert conn.execute(f"SELECT count(*) FROM {LEDGER}").fetchone() == (1,)


@pytest.mark.slow
def test_the_runner_lock_wait_is_bounded_and_names_the_holder(pg_url: str, items: Path) -> None:
    other = psycopg.connect(pg_url, autocommit=True)
    other.execute("SET application_name = 'deploy-pipeline-42'")
    other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    driver = PostgresDriver(pg_url, options=FAST.with_overrides(runner_wait_s=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(MigrationError) as failed:
            Migrator(driver, discover(items)).up()
        assert time.monotonic() - started < 3
        message = str(failed.value)
        assert "another migration runner still holds the PostgreSQL migration lock after 0.5 s"\
            in message
        assert f"pid {other.info.backend_pid}" in message and "deploy-pipeline-42" in message
        # a runner that waits long enough gets the lock once the holder lets go
        threading.Timer(0.5, lambda: other.execute("SELECT pg_advisory_unlock_all()")).start()
        patient = PostgresDriver(pg_url, options=FAST.with_overrides(runner_wait_s=10))
        try:
            assert [s.label for s in Migrator(patient, discover(items)).up()] == ["002_add_name"]
        finally:
            patient.close()
    finally:
        driver.close()
        other.close()


@pytest.mark.slow
def test_a_running_migration_names_itself_to_a_waiting_runner(pg_url: str, items: Path) -> None:
    first = PostgresDriver(pg_url, options=FAST)
    second = PostgresDriver(pg_url, options=FAST.with_overrides(runner_wait_s=0.3))
    try:
        with first.lock(), pytest.raises(MigrationError) as failed:
            Migrator(second, discover(items)).up()
        assert f"pid {first.conn.info.backend_pid}" in str(failed.value)
        assert "platformdb migrate since" in str(failed.value)
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_a_no_transaction_statement_is_retried_alone(pg_url: str, items: Path,
                                                     tmp_path: Path) -> None:
    """The statement that hit the lock is retried (a failed CREATE INDEX CONCURRENTLY's
    INVALID index dropped first); the statements before it are not run again."""
    first = PostgresDriver(pg_url)
    Migrator(first, discover(items)).up()
    first.close()
    write(items, {"003_index.sql": (
        "-- platformdb: no-transaction\n"
        "INSERT INTO items (id, name) VALUES (1, 'once');\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_name ON items (name);\n")})
    held = Holder(pg_url, "LOCK TABLE items IN ROW EXCLUSIVE MODE")
    held.release_after(1.0)
    driver = PostgresDriver(pg_url, options=FAST)
    try:
        Migrator(driver, discover(items)).up()
    finally:
        driver.close()
        held.release()
    assert driver.attempts["003_index"].count >= 2
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
        valid = conn.execute("SELECT indisvalid FROM pg_index"
                             " WHERE indexrelid = 'idx_items_name'::regclass").fetchone()
        assert valid == (True,)


@pytest.mark.slow
def test_readers_queued_behind_a_retrying_migration_wait_at_most_the_lock_timeout(
        pg_url: str, items: Path) -> None:
    """The ALTER needs ACCESS EXCLUSIVE and queues behind a long read; the reads that arrive
    after it queue behind it, but only for one lock_timeout: then it steps aside."""
    long_read = Holder(pg_url, "SELECT count(*) FROM items")
    long_read.release_after(1.5)
    latencies: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute("SELECT count(*) FROM items")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=reader)
    driver = PostgresDriver(pg_url, options=FAST)
    try:
        thread.start()
        time.sleep(0.1)
        Migrator(driver, discover(items)).up()
    finally:
        stop.set()
        thread.join()
        driver.close()
        long_read.release()
    assert driver.attempts["002_add_name"].count >= 2
    assert len(latencies) > 20
    assert max(latencies) < 0.15 + 0.25, f"a read waited {max(latencies):.3f} s"

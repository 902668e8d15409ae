"""Batched backfills on campaign_metrics (partitioned, RLS forced): every row once, in key
ranges per partition; killed mid-way, a rerun resumes exactly where it stopped."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.postgres.backfill import TABLE, backfill, progress_of, run
from platformdb.stores.postgres.driver import PostgresDriver
from tests.test_cli import REPO, cli

ROWS = 3_000
TOUCH = "UPDATE public.campaign_metrics SET touched = touched + 1"


def seed(url: str, rows: int = ROWS) -> None:
    """``rows`` metrics rows over two tenants and ~60 days (many partitions), plus two columns
    a backfill fills: ``spend_cents`` (nullable) and ``touched`` (a counter: a row updated
    twice would show 2)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(2):
            org, campaign = uuid.uuid4(), uuid.uuid4()
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'o', %s)",
                         (org, f"bf-{org.hex[:8]}"))
            conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES (%s, %s, 'c')",
                         (org, campaign))
            conn.execute(
                "INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type, spend)"
                " SELECT %s, %s, current_date - (i %% 60), 'd' || i, (i %% 7) + 0.25"
                " FROM generate_series(1, %s) i", (org, campaign, rows // 2))
        conn.execute("ALTER TABLE public.campaign_metrics ADD COLUMN spend_cents bigint,"
                     " ADD COLUMN touched integer NOT NULL DEFAULT 0")
        conn.execute("ANALYZE public.campaign_metrics")


def counts(url: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT touched, count(*) FROM campaign_metrics"
                                 " GROUP BY 1").fetchall())


@pytest.mark.slow
def test_a_backfill_fills_a_new_column_of_every_partition_in_batches(migrated_url: str) -> None:
    seed(migrated_url)
    seen: list[tuple[int, int | None]] = []
    report = backfill(migrated_url, "spend_cents",
                      "UPDATE campaign_metrics SET spend_cents = (spend * 100)::bigint"
                      " WHERE spend_cents IS NULL", batch_size=200,
                      progress=lambda what, done, total: seen.append((done, total)))
    assert report.done and not report.resumed
    assert report.rows_updated == ROWS and report.rows_scanned == ROWS
    assert report.partitions > 20 and report.batches >= ROWS // 200
    assert seen[-1][0] == ROWS
    assert all(b >= a for (a, _), (b, _) in itertools.pairwise(seen))
    with psycopg.connect(migrated_url) as conn:
        wrong = conn.execute("SELECT count(*) FROM campaign_metrics"
                             " WHERE spend_cents IS DISTINCT FROM (spend * 100)::bigint"
                             ).fetchone()
    assert wrong == (0,)
    rows = progress_of(migrated_url, "spend_cents")
    assert rows and all(r.done for r in rows) and sum(r.rows_updated for r in rows) == ROWS
    again = backfill(migrated_url, "spend_cents",
                     "UPDATE campaign_metrics SET spend_cents = (spend * 100)::bigint"
                     " WHERE spend_cents IS NULL", batch_size=200)
    assert again.resumed and again.batches == 0  # finished: nothing left to do


@pytest.mark.slow
def test_a_killed_backfill_resumes_without_redoing_or_skipping_a_row(migrated_url: str) -> None:
    seed(migrated_url)
    env = {**os.environ, "PLATFORMDB_POSTGRES_URL": migrated_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "platformdb.cli", "migrate", "backfill", "touch", "--sql", TOUCH,
         "--batch-size", "50", "--pause", "0.02"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                found = conn.execute(f"SELECT coalesce(sum(batches), 0) FROM {TABLE}"
                                     " WHERE name = 'touch'").fetchone() \
                    if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() != (None,) \
                    else (0,)
                if found and found[0] >= 12:
                    break
                assert process.poll() is None, process.communicate()
                time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    halfway = counts(migrated_url)
    assert set(halfway) == {0, 1} and 0 < halfway[1] < ROWS  # stopped mid-way, no row twice
    with psycopg.connect(migrated_url) as conn:
        recorded = conn.execute(f"SELECT sum(rows_updated) FROM {TABLE} WHERE name = 'touch'"
                                ).fetchone()
    assert recorded == (halfway[1],)  # the progress rows agree with the data, batch for batch
    report = backfill(migrated_url, "touch", TOUCH, batch_size=50)
    assert report.resumed and report.rows_updated == halfway[0]
    assert counts(migrated_url) == {1: ROWS}


@pytest.mark.slow
def test_a_different_update_under_the_same_name_is_refused(migrated_url: str) -> None:
    seed(migrated_url, rows=200)
    backfill(migrated_url, "once", TOUCH, batch_size=1000)
    with pytest.raises(MigrationError, match="was started with another UPDATE"):
        backfill(migrated_url, "once", TOUCH + " WHERE touched = 0")
    assert counts(migrated_url) == {1: 200}
    backfill(migrated_url, "once", TOUCH + " WHERE touched = 1", restart=True)
    assert counts(migrated_url) == {2: 200}


@pytest.mark.slow
def test_a_role_that_row_level_security_binds_is_refused_not_silently_skipped(
        migrated_url: str) -> None:
    """The partitions force RLS with no policy: a role that does not bypass it would update
    nothing. The backfill runs with row_security off, so PostgreSQL refuses instead."""
    seed(migrated_url, rows=200)
    backfill(migrated_url, "setup", "UPDATE campaign_metrics SET touched = 0", batch_size=1000)
    role = f"bf_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            conn.execute(f"GRANT USAGE ON SCHEMA public, partitions, platformdb TO {role}")
            conn.execute(f"GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public, partitions"
                         f" TO {role}")
            conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {role}")
            conn.execute(f"SET ROLE {role}")
            with pytest.raises(MigrationError, match="row-level security applies to this role"):
                run(conn, "bound", TOUCH)
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
    assert counts(migrated_url) == {0: 200}


@pytest.mark.slow
def test_a_backfill_migration_runs_in_batches_through_migrate_up(migrated_url: str,
                                                                 tmp_path: Path) -> None:
    seed(migrated_url, rows=600)
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir("postgresql"), folder)
    number = len(discover(folder)) + 1
    (folder / f"{number:03d}_fill_spend_cents.sql").write_text(
        f"-- {number:03d}: fill spend_cents of the existing rows, in batches\n"
        "-- platformdb: backfill batch-size=100 pause=0\n"
        "UPDATE public.campaign_metrics SET spend_cents = (spend * 100)::bigint"
        " WHERE spend_cents IS NULL;\n")
    (folder / f"{number:03d}_fill_spend_cents.down.sql").write_text("SELECT 1;\n")
    driver = PostgresDriver(migrated_url, options=MigrateOptions())
    try:
        migrator = Migrator(driver, discover(folder))
        plan = migrator.plan()[-1]
        assert plan.mode == "backfill" and "batches" in plan.statements[0].targets[0].note
        migrator.up()
    finally:
        driver.close()
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM campaign_metrics WHERE spend_cents IS NULL"
                            ).fetchone() == (0,)
    rows = progress_of(migrated_url, f"{number:03d}_fill_spend_cents")
    assert rows and all(r.done for r in rows)


@pytest.mark.slow
def test_backfill_through_the_cli(migrated_url: str) -> None:
    seed(migrated_url, rows=300)
    env = {"PLATFORMDB_POSTGRES_URL": migrated_url}
    result = cli("migrate", "backfill", "touch", "--sql", TOUCH, "--batch-size", "64",
                 "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_updated"] == 300 and report["done"]
    status = cli("migrate", "backfill", "touch", "--status", "--json", env=env)
    assert all(row["done"] for row in json.loads(status.stdout))
    bad = cli("migrate", "backfill", "x", "--sql", "DELETE FROM campaign_metrics", env=env)
    assert bad.returncode == 2 and "exactly one UPDATE" in bad.stderr

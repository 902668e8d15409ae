"""``-- platformdb: online-index`` on campaign_metrics (RANGE by month, then HASH by org) with
data and a writer inserting the whole time: no write waits longer than lock_timeout, every
row is there, the index is valid and used; an interrupted build resumes."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.postgres.driver import LEDGER, PostgresDriver
from platformdb.stores.postgres.online_index import partition_index_name

OPTIONS = MigrateOptions(lock_timeout_ms=200, lock_retries=50, backoff_base_s=0.05,
                         backoff_cap_s=0.3)
INDEX = "idx_campaign_metrics_org_id_dsp_type"
ORGS = [uuid.UUID(int=i + 1) for i in range(4)]
CAMPAIGNS = [uuid.UUID(int=1000 + i) for i in range(4)]


def with_online_index(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir("postgresql"), folder)
    number = len(discover(folder)) + 1
    (folder / f"{number:03d}_index_metrics_by_dsp.sql").write_text(
        f"-- {number:03d}: an index on the live, partitioned campaign_metrics, built online\n"
        "-- platformdb: online-index\n"
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON public.campaign_metrics (org_id, dsp_type);\n")
    (folder / f"{number:03d}_index_metrics_by_dsp.down.sql").write_text(
        f"DROP INDEX IF EXISTS public.{INDEX};\n")
    return folder


def seed(url: str, rows: int = 20_000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for org, campaign in zip(ORGS, CAMPAIGNS, strict=True):
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'o', %s)",
                         (org, f"o-{org.hex[-6:]}"))
            conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES (%s, %s, 'c')",
                         (org, campaign))
            conn.execute(
                "INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type,"
                " clicks) SELECT %s, %s, current_date - (i %% 60), 'dsp' || (i / 60), 1"
                " FROM generate_series(1, %s) i", (org, campaign, rows // len(ORGS)))
        conn.execute("ANALYZE campaign_metrics")


class Writer(threading.Thread):
    """Inserts one campaign_metrics row per statement until stopped, timing each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    org = ORGS[n % len(ORGS)]
                    started = time.perf_counter()
                    conn.execute(
                        "INSERT INTO campaign_metrics (org_id, campaign_id, metric_date,"
                        " dsp_type) VALUES (%s, %s, current_date - %s, %s)",
                        (org, CAMPAIGNS[n % len(ORGS)], n % 45, f"live{n}"))
                    self.latencies.append(time.perf_counter() - started)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def index_report(conn: psycopg.Connection[Any]) -> tuple[bool, int, int, set[str]]:
    """(parent valid, leaves with a valid attached index, leaves of the table, their names)."""
    valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
                         (f"public.{INDEX}",)).fetchone()
    attached = conn.execute(
        "SELECT t.relid::regclass::text FROM pg_partition_tree(%s::regclass) t"
        " JOIN pg_index i ON i.indexrelid = t.relid WHERE t.isleaf AND i.indisvalid",
        (f"public.{INDEX}",)).fetchall()
    leaves = conn.execute("SELECT count(*) FROM pg_partition_tree('public.campaign_metrics')"
                          " WHERE isleaf").fetchone()
    return (bool(valid and valid[0]), len(attached), int(leaves[0]) if leaves else 0,
            {str(r[0]).split(".")[-1] for r in attached})


@pytest.mark.slow
def test_an_online_index_on_a_live_partitioned_table(migrated_url: str, tmp_path: Path) -> None:
    seed(migrated_url)
    folder = with_online_index(tmp_path)
    writer = Writer(migrated_url)
    driver = PostgresDriver(migrated_url, options=OPTIONS)
    writer.start()
    try:
        time.sleep(0.2)
        steps = Migrator(driver, discover(folder)).up()
        time.sleep(0.2)
    finally:
        writer.stop.set()
        writer.join()
        driver.close()
    assert writer.errors == []
    assert [s.label for s in steps] == [f"{len(discover(folder)):03d}_index_metrics_by_dsp"]
    assert len(writer.latencies) > 50
    worst = max(writer.latencies)
    # no write waits longer than one lock_timeout (0.2 s; 0.1 s more for a loaded machine)
    assert worst < 0.2 + 0.1, f"a write waited {worst:.3f} s (lock_timeout 0.2 s)"
    with psycopg.connect(migrated_url) as conn:
        total = conn.execute("SELECT count(*) FROM campaign_metrics").fetchone()
        live = conn.execute("SELECT count(*) FROM campaign_metrics WHERE dsp_type LIKE 'live%'"
                            ).fetchone()
        valid, attached, leaves, names = index_report(conn)
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(str(r[0]) for r in conn.execute(
            "EXPLAIN SELECT count(*) FROM campaign_metrics WHERE org_id = %s"
            " AND dsp_type = 'dsp3'", (ORGS[0],)).fetchall())
    assert live == (len(writer.latencies),)  # every write landed
    assert total == (20_000 + len(writer.latencies),)
    assert valid and attached == leaves > 20
    assert any(name in plan for name in names), plan


@pytest.mark.slow
def test_an_interrupted_online_index_resumes(migrated_url: str, tmp_path: Path) -> None:
    """Stopped after three partitions, with an INVALID index left behind on a fourth (as a
    build killed mid-way leaves it), the next `migrate up` finishes the job."""
    seed(migrated_url, rows=2_000)
    folder = with_online_index(tmp_path)
    seen: list[int] = []

    def stop_after_three(what: str, done: int, total: int | None) -> None:
        seen.append(done)
        if done == 3:
            raise KeyboardInterrupt("stopped by the operator")

    driver = PostgresDriver(migrated_url, options=OPTIONS.with_overrides(
        progress=stop_after_three))
    with pytest.raises(KeyboardInterrupt):
        Migrator(driver, discover(folder)).up()
    driver.close()
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        valid, _, _, _ = index_report(conn)
        assert not valid and seen[-1] == 3  # three partitions built and attached, then stopped
        assert conn.execute(f"SELECT max(version) FROM {LEDGER}").fetchone() == (
            len(discover(folder)) - 1,)
        leaf = conn.execute(
            "SELECT c.relname FROM pg_partition_tree('public.campaign_metrics') t"
            " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf ORDER BY c.relname DESC LIMIT 1"
            ).fetchone()
        assert leaf is not None
        leftover = partition_index_name(str(leaf[0]), INDEX)
        conn.execute(f'CREATE INDEX "{leftover}" ON partitions."{leaf[0]}" (org_id, dsp_type)')
        conn.execute("UPDATE pg_index SET indisvalid = false"
                     " WHERE indexrelid = %s::regclass", (f'partitions."{leftover}"',))
    again = PostgresDriver(migrated_url, options=OPTIONS)
    try:
        Migrator(again, discover(folder)).up()
    finally:
        again.close()
    with psycopg.connect(migrated_url) as conn:
        valid, attached, leaves, names = index_report(conn)
        assert conn.execute(f"SELECT count(*) FROM {LEDGER} WHERE version = %s",
                            (len(discover(folder)),)).fetchone() == (1,)
    assert valid and attached == leaves
    assert leftover in names  # rebuilt under the same name, now valid


def test_an_online_index_on_a_plain_table_is_built_concurrently(pg_url: str,
                                                                tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "001_t.sql").write_text("-- 001\nCREATE TABLE t (id int PRIMARY KEY, x int);\n"
                                      "INSERT INTO t SELECT i, i FROM generate_series(1, 100) i;")
    (folder / "002_idx.sql").write_text("-- platformdb: online-index\n-- 002\n"
                                        "CREATE INDEX idx_t_x ON t (x);\n")
    driver = PostgresDriver(pg_url, options=OPTIONS)
    try:
        Migrator(driver, discover(folder)).up()
    finally:
        driver.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid ="
                            " 'idx_t_x'::regclass").fetchone() == (True,)


def test_an_online_index_file_holds_only_named_create_index(pg_url: str,
                                                            tmp_path: Path) -> None:
    from platformdb.errors import MigrationError

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "001_bad.sql").write_text("-- platformdb: online-index\n-- 001\n"
                                        "CREATE INDEX ON t (x);\n")
    driver = PostgresDriver(pg_url)
    try:
        with pytest.raises(MigrationError, match=r"001_bad.sql:3: name the index"):
            Migrator(driver, discover(folder)).up()
    finally:
        driver.close()


@pytest.mark.slow
def test_the_plan_of_an_online_index_says_it_builds_online(migrated_url: str,
                                                           tmp_path: Path) -> None:
    seed(migrated_url, rows=400)
    driver = PostgresDriver(migrated_url)
    try:
        plan = Migrator(driver, discover(with_online_index(tmp_path))).plan()
    finally:
        driver.close()
    statement = plan[-1].statements[0]
    assert plan[-1].mode == "online-index" and statement.severity == "ok"
    assert "partition(s) built CONCURRENTLY, each attached" in statement.targets[0].note

"""A migration that needs ACCESS EXCLUSIVE on a busy table, next to a tenant read workload.

A long transaction (a report) holds ACCESS SHARE on ``campaigns`` for --hold seconds.
Meanwhile a migration adds a column to ``campaigns`` (ACCESS EXCLUSIVE, metadata only),
and reader threads run tenant-scoped reads of ``campaigns`` (BEGIN, set_tenant, a read by
primary key, COMMIT) the whole time. Three runs, same workload, same holder:

  baseline   no migration
  retrying   the engine's migration: lock_timeout (--lock-timeout), then it gives up its
             place in the lock queue, pauses (jittered backoff) and tries again
  queueing   the same migration with a long lock_timeout and no retries (what a plain
             migration tool does): it waits in the queue, and every read queues behind it

Printed: each run's read latency (max, p99, p50) and reads done, the retrying migration's
attempts, total time and how long after the holder ended it finished; the ratio of the
retrying run's max latency to lock_timeout + 50 ms (the target: <= 1.0).

Run:  .venv/bin/python bench/bench_migrations.py [--hold 3] [--lock-timeout 200ms]
          [--readers 4]
Uses PLATFORMDB_POSTGRES_URL's server when set, else the embedded stack.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from _common import admin_url, drop_database, fresh_database

from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.options import MigrateOptions, parse_duration
from platformdb.stores.postgres.driver import PostgresDriver

ORGS = 20
CAMPAIGNS = 100


def prepare(url: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    driver = PostgresDriver(url)
    Migrator(driver, discover(migrations_dir("postgresql"))).up()
    driver.close()
    keys: list[tuple[uuid.UUID, uuid.UUID]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(ORGS):
            org = uuid.uuid4()
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'o', %s)",
                         (org, f"bench-{n}"))
            for _ in range(CAMPAIGNS):
                campaign = uuid.uuid4()
                keys.append((org, campaign))
            with conn.cursor().copy("COPY campaigns (org_id, id, name) FROM STDIN") as copy:
                for o, c in keys[-CAMPAIGNS:]:
                    copy.write_row((o, c, "bench"))
        conn.execute("ANALYZE")
    return keys


def migration_folder(parent: Path, run: str) -> Path:
    folder = parent / run
    shutil.copytree(migrations_dir("postgresql"), folder)
    number = len(discover(folder)) + 1
    (folder / f"{number:03d}_campaigns_note.sql").write_text(
        f"-- {number:03d}: a column on the busy campaigns table (ACCESS EXCLUSIVE, brief)\n"
        f"ALTER TABLE public.campaigns ADD COLUMN IF NOT EXISTS bench_{run} text;\n")
    (folder / f"{number:03d}_campaigns_note.down.sql").write_text(
        f"ALTER TABLE public.campaigns DROP COLUMN IF EXISTS bench_{run};\n")
    return folder


@dataclass
class Run:
    name: str
    latencies: list[float] = field(default_factory=list)
    attempts: int = 0
    migration_s: float = 0.0
    after_holder_s: float = 0.0

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[int(len(ms) * 0.99) - 1] if ms else 0.0
        text = (f"{self.name:9s} reads {len(ms):6d}  max {ms[-1]:8.1f} ms  p99 {p99:7.1f} ms"
                f"  p50 {statistics.median(ms):6.2f} ms")
        if self.attempts:
            text += (f"  | migration: {self.attempts} attempt(s), {self.migration_s:.2f} s in"
                     f" all, done {self.after_holder_s * 1000:.0f} ms after the holder ended")
        return text


def one_run(url: str, keys: list[tuple[uuid.UUID, uuid.UUID]], name: str,
            folder: Path | None, options: MigrateOptions, hold: float, readers: int) -> Run:
    result = Run(name)
    stop = threading.Event()
    lock = threading.Lock()

    def reader(offset: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            n = offset
            while not stop.is_set():
                org, campaign = keys[n % len(keys)]
                n += readers
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("SELECT set_tenant(%s)", (org,))
                    conn.execute("SELECT name, status FROM campaigns WHERE org_id = %s"
                                 " AND id = %s", (org, campaign)).fetchone()
                took = time.perf_counter() - started
                with lock:
                    result.latencies.append(took)
                time.sleep(0.002)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    holder = psycopg.connect(url)
    holder.execute("SELECT count(*) FROM campaigns")  # ACCESS SHARE until the end of its txn
    released = threading.Event()
    released_at: list[float] = []

    def release() -> None:
        holder.rollback()
        released_at.append(time.perf_counter())
        released.set()

    timer = threading.Timer(hold, release)
    timer.start()
    time.sleep(0.5)
    if folder is not None:
        driver = PostgresDriver(url, options=options)
        started = time.perf_counter()
        steps = Migrator(driver, discover(folder)).up()
        result.migration_s = time.perf_counter() - started
        label = steps[-1].label
        result.attempts = driver.attempts[label].count
        driver.close()
        released.wait()
        result.after_holder_s = max(started + result.migration_s - released_at[0], 0.0)
    released.wait()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    holder.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the holder holds")
    parser.add_argument("--lock-timeout", default="200ms")
    parser.add_argument("--readers", type=int, default=4)
    args = parser.parse_args()
    lock_timeout_ms = parse_duration(args.lock_timeout)
    admin = admin_url()
    url = fresh_database(admin, "bench_mig")
    work = Path(tempfile.mkdtemp(prefix="bench_migrations_"))
    try:
        keys = prepare(url)
        with psycopg.connect(url) as conn:
            server = conn.execute("SHOW server_version").fetchone()
        print(f"machine: {platform.machine()} {platform.system()} python "
              f"{platform.python_version()}; PostgreSQL {server[0] if server else '?'};"
              f" {ORGS * CAMPAIGNS} campaigns, {args.readers} readers, holder {args.hold:g} s,"
              f" lock_timeout {lock_timeout_ms} ms")
        retrying = MigrateOptions(lock_timeout_ms=lock_timeout_ms, lock_retries=100,
                                  retry_budget_s=600)
        queueing = MigrateOptions(lock_timeout_ms=int((args.hold + 10) * 1000), lock_retries=0)
        runs = []
        for name, folder, options in (
                ("baseline", None, retrying),
                ("retrying", migration_folder(work, "retrying"), retrying),
                ("queueing", migration_folder(work, "queueing"), queueing)):
            # each run on the same data, no ledger clash
            copy = fresh_database(admin, "bench_mig", template=url)
            try:
                runs.append(one_run(copy, keys, name, folder, options, args.hold, args.readers))
            finally:
                drop_database(admin, copy)
        for run in runs:
            print(run.line())
        worst = max(runs[1].latencies)
        target = lock_timeout_ms / 1000 + 0.050
        print(f"retrying max read latency / (lock_timeout + 50 ms) = {worst / target:.2f}"
              f" (target <= 1.00); queueing: {max(runs[2].latencies) / target:.2f};"
              f" baseline: {max(runs[0].latencies) / target:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop_database(admin, url)


if __name__ == "__main__":
    main()

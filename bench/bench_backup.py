"""Backup and restore of PostgreSQL as ratios to plain pg_dump -Fc / pg_restore.

On the load dataset (``seed load --scale S``, PostgreSQL only), in one run on
one server:

1. ``platformdb backup postgresql`` (custom format: snapshot, manifest with
   row counts and checksums) against ``pg_dump -Fc`` (target <= 1.1x);
2. ``platformdb restore postgresql`` into a new database against
   ``pg_restore -d`` of the plain dump into a new database (target <= 1.1x);
3. what the directory format with parallel jobs gains;
4. a staged ``restore all`` of a backup set (PostgreSQL, ClickHouse on chDB and
   Redis, the load dataset at ``--all-scale`` plus queued jobs) against the sum
   of restoring each store of the same set on its own (target <= 1.1x), in
   alternating rounds;
5. a ClickHouse restore (chDB, ``--ch-rows`` rows in raw, events and logs and
   their rollups) loading its tables in parallel against one after another,
   in alternating rounds (``--only-clickhouse`` runs just this);
6. a single-store PostgreSQL restore (``platformdb restore postgresql``: staged
   in a scratch database, ``pg_restore -j --jobs``, owners and grants put back,
   counts and checksums checked) against ``pg_restore -1`` (one serial
   transaction) of the same dump, in interleaved rounds: median ratio and range
   (target <= 0.75x with ``--jobs 2``; ``--only parallel-restore``);
7. the restore drill (``backup verify``) of the restore-all set against a plain
   ``restore all --force`` of it (target <= 1.3x), in alternating rounds
   (``--only-verify`` runs just this).

Run:  .venv/bin/python bench/bench_backup.py [--scale 1] [--all-scale 0.1] [--rounds 3]
      .venv/bin/python bench/bench_backup.py --only parallel-restore [--jobs 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from _common import admin_url, drop_database, fresh_database, stack_url

from platformdb.binaries import pg_tool
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.ops import backup, drill, migrations
from platformdb.ops.context import store_names
from platformdb.ops.seed import seed_load
from platformdb.redis import JobQueue, connect
from platformdb.stores.postgres import backup as pg_backup
from platformdb.stores.postgres.driver import PostgresDriver
from platformdb.types import Endpoints


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


@contextmanager
def loaded_set(admin: str, scale: float) -> Iterator[tuple[Endpoints, Path]]:
    """A platform of its own (load dataset at ``scale`` plus 20,000 queued jobs) and a
    backup set of it; everything dropped afterwards."""
    redis_url = re.sub(r"/\d*$", "", stack_url("redis")) + "/9"  # a database of its own
    work = Path(tempfile.mkdtemp(prefix="platformdb-bench-restore-all-"))
    source = fresh_database(admin)
    try:
        ends = Endpoints(postgres=source, clickhouse=f"chdb://{work / 'ch'}", redis=redis_url,
                         home=work)
        client = connect(redis_url)
        client.flushdb()
        migrations.up(ends)
        seed_load(ends, scale)
        queue = JobQueue(client, "etl")
        for start in range(0, 20_000, 1_000):
            queue.enqueue_many([("org_1", {"n": n}) for n in range(start, start + 1_000)])
        client.close()
        yield ends, backup.backup(ends, None, work / "sets")[0]
    finally:
        cleanup = connect(redis_url)
        cleanup.flushdb()
        cleanup.close()
        drop_database(admin, source)
        shutil.rmtree(work, ignore_errors=True)


def restore_all(admin: str, scale: float, rounds: int) -> None:
    """Section 4: a staged restore of every store against the sum of single-store ones."""
    with loaded_set(admin, scale) as (ends, folder):
        each: dict[str, list[float]] = {name: [] for name in store_names()}
        whole: list[float] = []
        for round_ in range(rounds):
            sides = ["each", "all"] if round_ % 2 == 0 else ["all", "each"]
            for side in sides:
                if side == "all":
                    whole.append(timed(lambda: backup.restore(ends, None, folder, force=True,
                                                              verify=True)))
                    continue
                for name in store_names():
                    each[name].append(timed(lambda name=name: backup.restore(
                        ends, [name], folder, force=True, verify=True)))
        sums = [sum(each[name][i] for name in store_names()) for i in range(rounds)]
        parts = ", ".join(f"{name} {statistics.median(each[name]):.1f} s"
                          for name in store_names())
        ratios = [w / t for w, t in zip(whole, sums, strict=True)]
        print(f"restore all (staged, --force --verify), load dataset scale {scale} + 20,000 jobs:"
              f" {statistics.median(whole):.1f} s; each store alone: {parts}, sum"
              f" {statistics.median(sums):.1f} s; ratio {statistics.median(ratios):.2f}x"
              f" (target <= 1.1x); rounds {' '.join(f'{r:.2f}' for r in ratios)}")


def verify_against_restore(admin: str, scale: float, rounds: int) -> None:
    """Section 7: the restore drill (``backup verify``) against a plain ``restore all
    --force`` of the same set, in alternating rounds (target <= 1.3x)."""
    with loaded_set(admin, scale) as (ends, folder):
        drills: list[float] = []
        restores: list[float] = []
        for round_ in range(rounds):
            sides = ["restore", "verify"] if round_ % 2 == 0 else ["verify", "restore"]
            for side in sides:
                if side == "restore":
                    restores.append(timed(lambda: backup.restore(ends, None, folder,
                                                                 force=True)))
                    continue
                found: list[drill.Drilled] = []
                drills.append(timed(lambda found=found: found.append(
                    drill.verify_set(ends, folder, record=False))))
                assert found[0].ok, found[0].reason
        ratios = [d / r for d, r in zip(drills, restores, strict=True)]
        print(f"backup verify (the drill), load dataset scale {scale} + 20,000 jobs:"
              f" {statistics.median(drills):.1f} s (range {min(drills):.1f}-{max(drills):.1f});"
              f" restore all --force {statistics.median(restores):.1f} s (range"
              f" {min(restores):.1f}-{max(restores):.1f}); ratio {statistics.median(ratios):.2f}x"
              f" (target <= 1.3x); rounds {' '.join(f'{r:.2f}' for r in ratios)}")


def clickhouse_restore(rows_: int, rounds: int) -> None:
    """Section 5: a ClickHouse restore (chDB) loading its tables in parallel against one
    after another (``jobs=1``, the restore before issue 19), in alternating rounds."""
    from platformdb.clickhouse import command, with_database
    from platformdb.clickhouse import connect as ch_connect
    from platformdb.stores.clickhouse import backup as ch_backup
    from platformdb.stores.clickhouse.dictionaries import NOWHERE
    from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders

    work = Path(tempfile.mkdtemp(prefix="platformdb-bench-ch-restore-"))
    url = f"chdb://{work / 'ch'}?database=bench_source"
    try:
        with ch_connect(url) as client:
            Migrator(ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE)),
                     discover(migrations_dir("clickhouse"))).up()
            org = "generateUUIDv4(number % 50)"
            command(client, "INSERT INTO campaign_metrics_raw SELECT now() - number % 2000000,"
                            f" {org}, generateUUIDv4(number % 500), 'dv360', number % 1000,"
                            " number % 10, number % 3, (number % 100) / 4, (number % 100) / 2"
                            f" FROM numbers({rows_})")
            command(client, "INSERT INTO user_events (timestamp, org_id, user_id, event_type)"
                            f" SELECT now64(3) - number % 1000000, {org},"
                            f" generateUUIDv4(number % 5000), 'login' FROM numbers({rows_})")
            command(client, "INSERT INTO api_logs (timestamp, org_id, path, status_code,"
                            " duration_ms) SELECT now64(3) - number % 1000000,"
                            f" {org}, '/v1/campaigns', 200, number % 900"
                            f" FROM numbers({rows_})")
        folder = ch_backup.backup(url, work / "backups")
        size = sum(f.stat().st_size for f in (folder / "data").iterdir()) / 1e6
        times: dict[int, list[float]] = {1: [], ch_backup.default_jobs(): []}
        for round_ in range(rounds):
            order = sorted(times) if round_ % 2 == 0 else sorted(times, reverse=True)
            for jobs in order:
                target = with_database(url, f"bench_target_{round_}_{jobs}")
                times[jobs].append(timed(lambda target=target, jobs=jobs: ch_backup.restore(
                    target, folder, jobs=jobs)))
                with ch_connect(target) as client:
                    command(client, f"DROP DATABASE {client.database} SYNC")
        serial, parallel = times[1], times[ch_backup.default_jobs()]
        ratios = [p / s for p, s in zip(parallel, serial, strict=True)]
        print(f"clickhouse restore (chDB, {rows_:,} rows in each of raw/events/logs,"
              f" {size:.0f} MB compressed): {ch_backup.default_jobs()} tables at once"
              f" {statistics.median(parallel):.2f} s ({min(parallel):.2f}-{max(parallel):.2f}),"
              f" one after another {statistics.median(serial):.2f} s"
              f" ({min(serial):.2f}-{max(serial):.2f}); ratio {statistics.median(ratios):.2f}x;"
              f" rounds {' '.join(f'{r:.2f}' for r in ratios)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parallel_restore(admin: str, scale: float, rounds: int, jobs: int) -> None:
    """Section 6: ``pg_restore -j`` inside the staged restore against ``pg_restore -1``."""
    work = Path(tempfile.mkdtemp(prefix="platformdb-bench-parallel-"))
    source = fresh_database(admin, migrate=True)
    try:
        seed_load(Endpoints(postgres=source, home=work), scale, clickhouse=False)
        with psycopg.connect(source) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                ).fetchone()[0]  # type: ignore[index]
        folder = pg_backup.backup(source, work, directory_format=True, jobs=jobs)
        dump = folder / pg_backup.DIRECTORY
        ours: list[float] = []
        serial: list[float] = []
        for round_ in range(rounds):
            for side in (["serial", "ours"] if round_ % 2 == 0 else ["ours", "serial"]):
                target = fresh_database(admin)
                try:
                    if side == "serial":
                        tool = [pg_tool("pg_restore", target), "-1", "--exit-on-error", "-d",
                                target, str(dump)]
                        serial.append(timed(lambda tool=tool: pg_backup.run_tool(
                            tool, "pg_restore")))
                    else:
                        drop_database(admin, target)  # the restore creates it
                        ours.append(timed(lambda target=target: pg_backup.restore(
                            folder, target, jobs=jobs)))
                finally:
                    drop_database(admin, target)
        ratios = [o / s for o, s in zip(ours, serial, strict=True)]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average"
              f" {' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared: other work runs)")
        print(f"single-store PostgreSQL restore, load dataset scale {scale} ({size}),"
              f" {rounds} interleaved rounds: platformdb restore -j {jobs}"
              f" {statistics.median(ours):.2f} s (range {min(ours):.2f}-{max(ours):.2f}),"
              f" pg_restore -1 {statistics.median(serial):.2f} s (range {min(serial):.2f}-"
              f"{max(serial):.2f}); ratio median {statistics.median(ratios):.2f}x, range"
              f" {min(ratios):.2f}-{max(ratios):.2f}x (target <= 0.75x)")
    finally:
        drop_database(admin, source)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--all-scale", type=float, default=0.1,
                        help="load dataset scale of the restore-all section (0 skips it)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the restore-all section")
    parser.add_argument("--skip-postgres", action="store_true",
                        help="only the restore-all section")
    parser.add_argument("--ch-rows", type=int, default=1_000_000,
                        help="rows per table of the ClickHouse restore section (0 skips it)")
    parser.add_argument("--only-clickhouse", action="store_true",
                        help="only the ClickHouse restore section")
    parser.add_argument("--only", choices=["parallel-restore"],
                        help="run one section: parallel-restore (section 6)")
    parser.add_argument("--only-verify", action="store_true",
                        help="only the restore drill against restore all (--all-scale)")
    args = parser.parse_args()
    if args.only == "parallel-restore":
        parallel_restore(admin_url(), args.scale, args.rounds, args.jobs)
        return
    if args.only_verify:
        verify_against_restore(admin_url(), args.all_scale or 0.1, args.rounds)
        return
    if args.ch_rows > 0:
        clickhouse_restore(args.ch_rows, args.rounds)
    if args.only_clickhouse:
        return
    admin = admin_url()
    if args.all_scale > 0:
        restore_all(admin, args.all_scale, args.rounds)
        verify_against_restore(admin, args.all_scale, args.rounds)
    if args.skip_postgres:
        return
    work = Path(tempfile.mkdtemp(prefix="platformdb-bench-backup-"))
    source = fresh_database(admin)
    targets: list[str] = []
    try:
        driver = PostgresDriver(source)
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
        driver.close()
        seed_load(Endpoints(postgres=source, home=work), args.scale, clickhouse=False)
        with psycopg.connect(source) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                ).fetchone()[0]  # type: ignore[index]
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; PostgreSQL {server};"
              f" load dataset scale {args.scale} ({size})")

        plain_file = work / "plain.dump"
        plain = timed(lambda: pg_backup.run_tool(  # the password through a passfile
            [pg_tool("pg_dump", source), "-Fc", "-f", str(plain_file), "-d", source], "pg_dump"))
        folder: list[Path] = []
        ours = timed(lambda: folder.append(pg_backup.backup(source, work / "ours")))
        print(f"backup: platformdb {ours:.1f} s, pg_dump -Fc {plain:.1f} s,"
              f" ratio {ours / plain:.2f}x (target <= 1.1x)")
        parallel: list[Path] = []
        directory = timed(lambda: parallel.append(pg_backup.backup(
            source, work / "dir", directory_format=True, jobs=args.jobs)))
        print(f"backup, directory format -j {args.jobs}: {directory:.1f} s"
              f" ({plain / directory:.2f}x the speed of pg_dump -Fc)")

        plain_target, our_target, dir_target = (fresh_database(admin) for _ in range(3))
        targets += [plain_target, our_target, dir_target]
        drop_database(admin, our_target)  # restore creates it
        drop_database(admin, dir_target)
        base = timed(lambda: pg_backup.run_tool(
            [pg_tool("pg_restore", plain_target), "--single-transaction", "--no-owner", "-d",
             plain_target, str(plain_file)], "pg_restore"))
        restored = timed(lambda: pg_backup.restore(folder[0], our_target, verify=True, jobs=1))
        print(f"restore: platformdb (with --verify, -j 1) {restored:.1f} s, pg_restore"
              f" --single-transaction {base:.1f} s, ratio {restored / base:.2f}x (target <= 1.1x)")
        par = timed(lambda: pg_backup.restore(parallel[0], dir_target, jobs=args.jobs))
        print(f"restore, directory format -j {args.jobs}: {par:.1f} s")
    finally:
        for url in (source, *targets):
            drop_database(admin, url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

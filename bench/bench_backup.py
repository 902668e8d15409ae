"""Backup and restore of PostgreSQL as ratios to plain pg_dump -Fc / pg_restore.

On the load dataset (``seed load --scale S``, PostgreSQL only), in one run on
one server:

1. ``platformdb backup postgresql`` (custom format: snapshot, manifest with
   row counts and checksums) against ``pg_dump -Fc`` (target <= 1.1x);
2. ``platformdb restore postgresql`` into a new database against
   ``pg_restore -d`` of the plain dump into a new database (target <= 1.1x);
3. what the directory format with parallel jobs gains.

Run:  .venv/bin/python bench/bench_backup.py [--scale 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from platformdb import embedded
from platformdb.backup import postgres as pg_backup
from platformdb.config import Settings, load_settings
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.postgres import PostgresDriver, pg_tool
from platformdb.seed import seed_load


def admin_url() -> str:
    url = embedded.endpoints(load_settings(), start=True, stores=["postgresql"]).postgres or ""
    return re.sub(r"/[^/]*$", "/postgres", url)


def database(admin: str, name: str | None = None) -> str:
    name = name or f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return re.sub(r"/[^/]*$", f"/{name}", admin)


def drop(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    admin = admin_url()
    work = Path(tempfile.mkdtemp(prefix="platformdb-bench-backup-"))
    source = database(admin)
    targets: list[str] = []
    try:
        driver = PostgresDriver(source)
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
        driver.close()
        seed_load(Settings(home=work, postgres_url=source), args.scale, clickhouse=False)
        with psycopg.connect(source) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                ).fetchone()[0]  # type: ignore[index]
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; PostgreSQL {server};"
              f" load dataset scale {args.scale} ({size})")

        plain_file = work / "plain.dump"
        plain = timed(lambda: subprocess.run(
            [pg_tool("pg_dump", source), "-Fc", "-f", str(plain_file), source], check=True))
        folder: list[Path] = []
        ours = timed(lambda: folder.append(pg_backup.backup(source, work / "ours")))
        print(f"backup: platformdb {ours:.1f} s, pg_dump -Fc {plain:.1f} s,"
              f" ratio {ours / plain:.2f}x (target <= 1.1x)")
        parallel: list[Path] = []
        directory = timed(lambda: parallel.append(pg_backup.backup(
            source, work / "dir", directory_format=True, jobs=args.jobs)))
        print(f"backup, directory format -j {args.jobs}: {directory:.1f} s"
              f" ({plain / directory:.2f}x the speed of pg_dump -Fc)")

        plain_target, our_target, dir_target = (database(admin) for _ in range(3))
        targets += [plain_target, our_target, dir_target]
        drop(admin, our_target)  # restore creates it
        drop(admin, dir_target)
        base = timed(lambda: subprocess.run(
            [pg_tool("pg_restore", plain_target), "--single-transaction", "--no-owner", "-d",
             plain_target, str(plain_file)], check=True, capture_output=True))
        restored = timed(lambda: pg_backup.restore(folder[0], our_target, verify=True))
        print(f"restore: platformdb (with --verify) {restored:.1f} s, pg_restore"
              f" --single-transaction {base:.1f} s, ratio {restored / base:.2f}x (target <= 1.1x)")
        par = timed(lambda: pg_backup.restore(parallel[0], dir_target))
        print(f"restore, directory format: {par:.1f} s")
    finally:
        for url in (source, *targets):
            drop(admin, url)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

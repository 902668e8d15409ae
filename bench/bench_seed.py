"""Seed-load benchmark: PostgreSQL throughput as a ratio to ``pgbench -i``, and scaling.

1. ``seed load --scale S --no-clickhouse`` into a fresh migrated database:
   rows/s over every row it writes, against ``pgbench -i -I dtg -s K``
   (client-side data generation, COPY) of about the same number of rows, on
   the same server in the same run (target >= 0.7x).
2. Load time and peak memory (max RSS of the loading process) at several
   scales, PostgreSQL and ClickHouse together: time should grow linearly,
   memory stay flat.

Run:  .venv/bin/python bench/bench_seed.py [--scales 0.1,0.5,1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import admin_url, drop_database, fresh_database

from platformdb.binaries import pg_tool
from platformdb.ops.seed.load import plan

CHILD = """
import json, resource, sys, time
from pathlib import Path
from platformdb.ops.seed import seed_load
from platformdb.types import Endpoints
from platformdb.clickhouse import connect
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.clickhouse.dictionaries import NOWHERE
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders
pg, home, scale, ch = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
settings = Endpoints(postgres=pg, clickhouse=f"chdb://{home}/chdb", redis="redis://127.0.0.1:1/0",
                     home=home)
if ch:
    with connect(f"chdb://{home}/chdb") as client:
        driver = ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE))
        Migrator(driver, discover(migrations_dir("clickhouse"))).up()
started = time.perf_counter()
seed_load(settings, scale, clickhouse=ch)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load(admin: str, scale: float, clickhouse: bool) -> dict[str, float]:
    url = fresh_database(admin, migrate=True)
    home = Path(tempfile.mkdtemp(prefix="platformdb-bench-seed-"))
    try:
        result = subprocess.run([sys.executable, "-c", CHILD, url, str(home), str(scale),
                                 "1" if clickhouse else "0"],
                                check=True, capture_output=True, text=True)
        values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
        return values
    finally:
        drop_database(admin, url)
        subprocess.run(["rm", "-rf", str(home)], check=False)


def pgbench_init(admin: str, pgbench_scale: int, steps: str = "dtg") -> float:
    url = fresh_database(admin)
    try:
        started = time.perf_counter()
        subprocess.run([pg_tool("pgbench"), "-i", "-I", steps, "-q", "-s", str(pgbench_scale), url],
                       check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        drop_database(admin, url)


def pg_rows(scale: float) -> int:
    shape = plan(scale)
    return shape.orgs * 2 + shape.users * 2 + shape.campaigns + shape.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0.1,0.5,1")
    parser.add_argument("--ratio-scale", type=float, default=0.1)
    args = parser.parse_args()
    admin = admin_url()
    with psycopg.connect(admin) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()};"
          f" PostgreSQL {server}")

    rows = pg_rows(args.ratio_scale)
    ours = load(admin, args.ratio_scale, clickhouse=False)
    pgbench_scale = max(1, round(rows / 100_000))
    theirs = pgbench_init(admin, pgbench_scale)
    ours_rate, theirs_rate = rows / ours["seconds"], pgbench_scale * 100_000 / theirs
    print(f"PostgreSQL: seed load --scale {args.ratio_scale} {rows:,} rows in {ours['seconds']:.1f}"
          f" s = {ours_rate:,.0f} rows/s; pgbench -i -I dtg -s {pgbench_scale}"
          f" {pgbench_scale * 100_000:,} rows in {theirs:.1f} s = {theirs_rate:,.0f} rows/s;"
          f" ratio {ours_rate / theirs_rate:.2f}x (target >= 0.7x)")
    with_keys = pgbench_init(admin, pgbench_scale, "dtgp")
    keyed_rate = pgbench_scale * 100_000 / with_keys
    print(f"  pgbench -i -I dtgp (primary keys built after the load) {keyed_rate:,.0f} rows/s;"
          f" ratio {ours_rate / keyed_rate:.2f}x")

    for scale in (float(s) for s in args.scales.split(",")):
        result = load(admin, scale, clickhouse=True)
        shape = plan(scale)
        print(f"scale {scale}: {pg_rows(scale):,} PostgreSQL rows + {shape.raw:,} ClickHouse raw"
              f" rows in {result['seconds']:.1f} s, peak RSS {result['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

"""Tenant export benchmark: ``tenant export`` of one org as a ratio to plain reads of its rows.

Loads the load dataset (``seed load``) at ``--scale`` (default 0.2: 200 orgs,
2M PostgreSQL and 10M ClickHouse rows) into a fresh migrated PostgreSQL
database and a scratch chDB path, then times, for one org, in the same run:

- ours: ``platformdb.ops.tenant.export_tenant`` (one REPEATABLE READ snapshot and
  COPY per PostgreSQL table, a hard-linked snapshot and a Native stream per
  ClickHouse table, the Redis jobs, checksums, the manifest and the tar);
- baseline: ``COPY (SELECT * FROM t WHERE org_id = ...) TO STDOUT`` of the same
  PostgreSQL tables plus ``SELECT * FROM t WHERE org_id = ... FORMAT Native``
  of the same ClickHouse tables, written to files, nothing else.

Prints the median of ``--rounds`` (interleaved: baseline, then ours, each round), the
ratio (target <= 1.3x), and the median and range of the per-round ratios.

Run:  .venv/bin/python bench/bench_tenant.py [--scale 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from _common import admin_url, drop_database, fresh_database, stack_url
from psycopg import sql

from platformdb.clickhouse import connect
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.ops import tenant
from platformdb.ops.seed import seed_load
from platformdb.ops.seed.load import org_id, plan
from platformdb.stores.clickhouse import tenant as tenant_ch
from platformdb.stores.clickhouse.dictionaries import NOWHERE
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders
from platformdb.stores.postgres import tenant as tenant_pg
from platformdb.types import Endpoints


def baseline(endpoints: Endpoints, org: uuid.UUID, out: Path) -> None:
    """The org's rows, plainly: COPY per PostgreSQL table, FORMAT Native per ClickHouse one."""
    out.mkdir()
    assert endpoints.postgres is not None and endpoints.clickhouse is not None
    with psycopg.connect(endpoints.postgres) as conn:
        for table in tenant_pg.tables(conn):
            statement = sql.SQL("COPY (SELECT * FROM {} WHERE {} = {}) TO STDOUT"
                                " (FORMAT csv, HEADER true)").format(
                sql.Identifier(table.name), sql.Identifier(table.column), sql.Literal(str(org)))
            with (open(out / f"{table.name}.csv", "wb") as handle, conn.cursor() as cur,
                  cur.copy(statement) as copy):
                for chunk in copy:
                    handle.write(chunk)
    with connect(endpoints.clickhouse) as client:
        for name in tenant_ch.tables(client):
            stream: Any = client.raw_stream(f"SELECT * FROM `{name}` WHERE org_id = {{org:UUID}}",
                                            parameters={"org": org}, fmt="Native")
            with open(out / f"{name}.native", "wb") as handle:
                for chunk in iter(lambda s=stream: s.read(1 << 20), b""):
                    handle.write(chunk)
            stream.close()


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    admin, redis_url = admin_url(), stack_url("redis")
    url = fresh_database(admin, "bench_tenant", migrate=True)
    home = Path(tempfile.mkdtemp(prefix="platformdb-bench-tenant-"))
    chdb = f"chdb://{home / 'chdb'}"
    try:
        with psycopg.connect(admin) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()};"
              f" PostgreSQL {server}, chDB")
        with connect(chdb) as client:
            Migrator(ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE)),
                     discover(migrations_dir("clickhouse"))).up()
        shape = plan(args.scale)
        started = time.perf_counter()
        seed_load(Endpoints(postgres=url, clickhouse=chdb, redis=redis_url, home=home),
                  args.scale)
        print(f"loaded scale {args.scale}: {shape.orgs} orgs, {shape.metrics:,} PostgreSQL"
              f" metric rows, {shape.raw:,} ClickHouse raw rows in"
              f" {time.perf_counter() - started:.0f} s")
        endpoints = Endpoints(postgres=url, clickhouse=chdb, redis=redis_url)
        org = org_id(shape.orgs // 2)
        prefix = f"bench{uuid.uuid4().hex[:6]}:"
        ours, theirs = [], []
        for i in range(args.rounds):
            plain, archive = home / f"baseline-{i}", home / f"export-{i}.tar"
            theirs.append(timed(lambda p=plain: baseline(endpoints, org, p)))
            ours.append(timed(lambda a=archive: tenant.export_tenant(
                endpoints, str(org), a, redis_prefix=prefix)))
        size = (home / "export-0.tar").stat().st_size
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        ratios = sorted(o / t for o, t in zip(ours, theirs, strict=True))
        print(f"export of one org ({size / 1e6:.1f} MB archive): tenant export {ours_s:.3f} s;"
              f" COPY + FORMAT Native of the same tables {theirs_s:.3f} s;"
              f" ratio {ours_s / theirs_s:.2f}x (target <= 1.3x); per interleaved round"
              f" median {statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x")
    finally:
        drop_database(admin, url)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

"""PostgreSQL benchmarks, each a ratio to a baseline measured in the same run.

1. ``migrate up`` of every PostgreSQL migration into a fresh database, against
   ``psql --single-transaction -f ...`` of the same files (target <= 1.5x).
2. A tenant-scoped read workload through pgbench: campaign by id, campaigns of
   an org, user by org and email. Through a login of platform_app with RLS and
   the tenant set by set_tenant() in the round trip of the first read, against
   the owner without RLS running the same reads in the same round trips
   (target >= 0.9x of the no-RLS throughput).

   How it keeps the noise out: both sides run a fixed number of transactions
   per client (pgbench -t, sized from a warm-up so a run lasts about
   --seconds), each pgbench run keeps its connections for the whole run, the
   two sides alternate in every round (and swap who goes first each round), and
   the result is the median of the per-round ratios over --rounds rounds (at
   least 5). Both protocols are measured: "prepared" (what psycopg and JDBC
   use after a few executions; BEGIN, set_tenant and the first read go in one
   pipeline) and "simple" (one message, statements separated by \\;).

Run:  .venv/bin/python bench/bench_postgres.py [--rounds 5] [--seconds 10]
          [--protocol prepared --protocol simple] [--clients 4]
Uses PLATFORMDB_POSTGRES_URL's server when set, else the embedded stack.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit

import bcrypt
import psycopg
from _common import admin_url, drop_database, fresh_database

from platformdb.binaries import pg_tool
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres.driver import PostgresDriver

ORGS = 100
CAMPAIGNS_PER_ORG = 200
USERS_PER_ORG = 20


def time_engine(admin: str) -> float:
    url = fresh_database(admin)
    try:
        started = time.perf_counter()
        driver = PostgresDriver(url)
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
        driver.close()
        return time.perf_counter() - started
    finally:
        drop_database(admin, url)


def time_psql(admin: str) -> float:
    url = fresh_database(admin)
    files = [str(m.path) for m in discover(migrations_dir("postgresql"))]
    args = [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", url]
    for path in files:
        args += ["-f", path]
    try:
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        drop_database(admin, url)


def load_tenants(url: str) -> None:
    """ORGS orgs with campaigns and users; ids derived from md5 so pgbench can name them."""
    password_hash = bcrypt.hashpw(b"bench-password", bcrypt.gensalt(rounds=10)).decode()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, slug)"
            " SELECT md5('org' || n)::uuid, 'Org ' || n, 'org-' || n FROM generate_series(1, %s) n",
            (ORGS,))
        conn.execute(
            "INSERT INTO users (org_id, id, email, password_hash, name)"
            " SELECT md5('org' || n)::uuid, md5('user' || n || '-' || u)::uuid,"
            " 'u' || u || '@org' || n || '.test', %s, 'User ' || u"
            " FROM generate_series(1, %s) n, generate_series(1, %s) u",
            (password_hash, ORGS, USERS_PER_ORG))
        conn.execute(
            "INSERT INTO campaigns (org_id, id, name, status, budget)"
            " SELECT md5('org' || n)::uuid, md5('camp' || n || '-' || c)::uuid,"
            " 'Campaign ' || c || ' of org ' || n, 'active', 1000"
            " FROM generate_series(1, %s) n, generate_series(1, %s) c",
            (ORGS, CAMPAIGNS_PER_ORG))
        conn.execute("ANALYZE")


READS = (
    "SELECT id, name, status, budget FROM campaigns WHERE org_id = md5('org' || :n)::uuid"
    " AND id = md5('camp' || :n || '-' || :c)::uuid",
    "SELECT id, name FROM campaigns WHERE org_id = md5('org' || :n)::uuid"
    " ORDER BY created_at DESC LIMIT 20",
    "SELECT id, name FROM users WHERE org_id = md5('org' || :n)::uuid"
    " AND email = 'u' || :u || '@org' || :n || '.test'",
)
SET_TENANT = "SELECT set_tenant(md5('org' || :n)::uuid)"
PROTOCOLS = ("prepared", "simple")


def workload(tenant: bool, protocol: str) -> str:
    """One transaction; BEGIN (and, with RLS, set_tenant) travel with the first read."""
    head = (f"\\set n random(1, {ORGS})\n\\set c random(1, {CAMPAIGNS_PER_ORG})\n"
            f"\\set u random(1, {USERS_PER_ORG})\n")
    first, *rest = READS
    setup = [SET_TENANT] if tenant else []
    if protocol == "simple":  # one message: \\; joins statements
        opening = " \\; ".join(["BEGIN", *setup, first]) + ";\n"
    else:  # extended protocol: a pipeline sends them in one round trip
        opening = "\\startpipeline\n" + "".join(
            f"{q};\n" for q in ["BEGIN", *setup, first]) + "\\endpipeline\n"
    return head + opening + "".join(f"{q};\n" for q in rest) + "COMMIT;\n"


APP_LOGIN = "platformdb_bench_app"


def app_url(url: str) -> str:
    """``url`` as a login role that inherits platform_app (subject to RLS)."""
    password = uuid.uuid4().hex
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_LOGIN,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(f"{verb} ROLE {APP_LOGIN} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT platform_app TO {APP_LOGIN}")
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{APP_LOGIN}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def pgbench(url: str, script: str, protocol: str, clients: int, *,
            transactions: int | None = None, seconds: int | None = None) -> float:
    """tps of one pgbench run: a fixed number of transactions per client, or a duration."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    work = ["-t", str(transactions)] if transactions else ["-T", str(seconds or 3)]
    try:
        result = subprocess.run(
            [pg_tool("pgbench"), "-n", "-M", protocol, "-c", str(clients),
             "-j", str(max(1, clients // 2)), *work, "-f", handle.name, url],
            check=True, capture_output=True, text=True)
    finally:
        os.unlink(handle.name)
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def without_rls(admin: str, url: str) -> str:
    """A copy of ``url``'s database with row-level security disabled on every table.

    The baseline the target speaks of: the same reads, by the same login with the
    same grants, without RLS -- so the ratio measures RLS (policies and the tenant
    context), not the privilege checks a superuser skips.
    """
    name = f"bench_norls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{urlsplit(url).path.lstrip("/")}"')
    copy = urlsplit(url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(copy) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'partitions')"
            " AND c.relrowsecurity").fetchall()
        for (table,) in tables:
            conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY,"
                         " DISABLE ROW LEVEL SECURITY")
    return copy


def tenant_reads(plain_url: str, rls_url: str, protocol: str, rounds: int, seconds: int,
                 clients: int) -> tuple[float, float, float, list[float]]:
    """Median plain tps, median RLS tps, median per-round ratio, and the ratios."""
    plain_script, rls_script = workload(False, protocol), workload(True, protocol)
    warm = pgbench(plain_url, plain_script, protocol, clients, seconds=3)
    pgbench(rls_url, rls_script, protocol, clients, seconds=3)
    per_client = max(100, int(warm * seconds / clients))
    plain: list[float] = []
    rls: list[float] = []
    for round_ in range(rounds):
        sides = [(plain_url, plain_script, plain), (rls_url, rls_script, rls)]
        for target, script, results in sides[:: 1 if round_ % 2 == 0 else -1]:
            results.append(pgbench(target, script, protocol, clients,
                                   transactions=per_client))
    ratios = [r / p for p, r in zip(plain, rls, strict=True)]
    return statistics.median(plain), statistics.median(rls), statistics.median(ratios), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help="length of one pgbench run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS)
    parser.add_argument("--owner", action="store_true",
                        help="also compare with the owner (a superuser) reading without RLS")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (the median of interleaved rounds)")
    admin = admin_url()
    with psycopg.connect(admin) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()};"
          f" PostgreSQL {server}; load average {os.getloadavg()[0]:.2f}")

    engine = [time_engine(admin) for _ in range(args.rounds)]
    baseline = [time_psql(admin) for _ in range(args.rounds)]
    e, b = statistics.median(engine), statistics.median(baseline)
    print(f"migrate up (all files): engine {e * 1000:.0f} ms, psql -1 -f {b * 1000:.0f} ms,"
          f" ratio {e / b:.2f}x (target <= 1.5x)")

    url = fresh_database(admin)
    copies: list[str] = []
    try:
        driver = PostgresDriver(url)
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
        driver.close()
        load_tenants(url)
        rls_url = app_url(url)
        copies.append(without_rls(admin, url))
        plain_url = urlsplit(rls_url)._replace(path=urlsplit(copies[0]).path).geturl()
        for protocol in args.protocol or PROTOCOLS:
            p, r, ratio, ratios = tenant_reads(plain_url, rls_url, protocol, args.rounds,
                                               args.seconds, args.clients)
            print(f"tenant reads ({protocol} protocol, pgbench, {args.clients} clients, "
                  f"{args.rounds} interleaved rounds), one platform_app login: without RLS"
                  f" {p:.0f} tps, with RLS {r:.0f} tps, ratio {ratio:.2f}x (target >= 0.9x);"
                  f" rounds {' '.join(f'{x:.2f}' for x in ratios)}")
            if args.owner:
                o, r2, ratio2, _ = tenant_reads(url, rls_url, protocol, args.rounds,
                                                args.seconds, args.clients)
                print(f"  for reference, the owner (a superuser: no privilege checks, no RLS)"
                      f" {o:.0f} tps vs platform_app with RLS {r2:.0f} tps: {ratio2:.2f}x")
    finally:
        for copy in copies:
            drop_database(admin, copy)
        drop_database(admin, url)


if __name__ == "__main__":
    main()

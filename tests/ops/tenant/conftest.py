"""A deployment of all three stores per test: a migrated PostgreSQL database, a migrated
ClickHouse database (chDB, or the test server), the shared Redis with a key prefix of
the test's own, and helpers that give an org rows in every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse import connect as ch_connect
from platformdb.migrate import Migrator
from platformdb.ops import tenant
from platformdb.redis import Cache, JobQueue, Limit, RateLimiter, SessionStore
from platformdb.redis import connect as redis_connect
from platformdb.stores.clickhouse.dictionaries import collection_name
from platformdb.types import Endpoints
from tests.clickhouse.conftest import (
    MIGRATIONS,
    ch,
    ch_empty,
    ch_target,
    ch_url,
    driver_for,
    pg,
    pg_template,
    url_for,
)
from tests.conftest import create_database, drop_database, fresh_name
from tests.redis.conftest import functions_url, redis_prefix
from tests.redis.helpers import delete_prefix

__all__ = ["ch", "ch_empty", "ch_target", "ch_url", "functions_url", "pg", "pg_template",
           "redis_prefix"]

BCRYPT = "$2b$12$yFOdNw6VyDky2Yc7oSGEwO5JuODCCz0PHAG9h5.Eevfuf1MXYRTyy"


@dataclass
class Deployment:
    endpoints: Endpoints
    prefix: str
    ch: Client

    def pg(self) -> psycopg.Connection[tuple[object, ...]]:
        assert self.endpoints.postgres is not None
        return psycopg.connect(self.endpoints.postgres, autocommit=True)

    def redis(self):  # type: ignore[no-untyped-def]
        assert self.endpoints.redis is not None
        return redis_connect(self.endpoints.redis)


@pytest.fixture
def deployment(pg: str, ch: Client, ch_url: str, functions_url: str,
               redis_prefix: str) -> Iterator[Deployment]:
    yield Deployment(Endpoints(postgres=pg, clickhouse=ch_url, redis=functions_url),
                     redis_prefix, ch)


def add_org(dep: Deployment, slug: str, *, users: int = 3, campaigns: int = 3,
            ch_rows: int = 50, jobs: int = 3) -> str:
    """An org with rows in every PostgreSQL table, ClickHouse table and Redis structure."""
    org = str(uuid.uuid4())
    with dep.pg() as conn, conn.transaction():
        conn.execute("SELECT set_tenant(%s)", (org,))
        conn.execute("INSERT INTO organizations (id, name, slug, settings) VALUES (%s, %s, %s,"
                     " '{\"tz\": \"UTC\", \"note\": \"a, \\\"quoted\\\"\\nline\"}')",
                     (org, f"Org {slug}", slug))
        user_ids = [str(uuid.uuid4()) for _ in range(users)]
        for i, user in enumerate(user_ids):
            conn.execute("INSERT INTO users (org_id, id, email, password_hash, name) VALUES"
                         " (%s, %s, %s, %s, %s)", (org, user, f"u{i}@{slug}.example", BCRYPT,
                                                   "User, \"one\"" if i == 1 else f"User {i}"))
            conn.execute("INSERT INTO user_roles (org_id, user_id, role) VALUES (%s, %s, %s)",
                         (org, user, "admin" if i == 0 else "viewer"))
            conn.execute("INSERT INTO notifications (org_id, user_id, channel, payload) VALUES"
                         " (%s, %s, 'email', '{\"subject\": \"hi\"}')", (org, user))
        for c in range(campaigns):
            campaign = str(uuid.uuid4())
            conn.execute("INSERT INTO campaigns (org_id, id, name, budget, created_by, status)"
                         " VALUES (%s, %s, %s, 1000.50, %s, 'active')",
                         (org, campaign, f"Campaign {c}", user_ids[0]))
            conn.execute("INSERT INTO campaign_metrics (org_id, campaign_id, metric_date,"
                         " dsp_type, impressions, spend) SELECT %s, %s, current_date - d,"
                         " 'dv360', d * 10, d * 1.25 FROM generate_series(0, 9) d",
                         (org, campaign))
            conn.execute("UPDATE campaigns SET status = 'paused' WHERE org_id = %s AND id = %s",
                         (org, campaign))
    add_clickhouse_rows(dep, org, ch_rows)
    client = dep.redis()
    try:
        queue = JobQueue(client, "etl", prefix=dep.prefix)
        for j in range(jobs):
            queue.enqueue({"n": j}, org_id=org, delay=3600.0 if j == 1 else 0.0)
        if jobs:
            JobQueue(client, "reports", prefix=dep.prefix).enqueue({"r": 1}, org_id=org)
        SessionStore(client, prefix=dep.prefix).create("user1", {"a": 1}, org_id=org)
        Cache(client, "campaigns", prefix=dep.prefix).set("c1", {"v": 1}, org_id=org,
                                                           tags=["t1"])
        RateLimiter(client, Limit(100, 3600.0), prefix=dep.prefix).allow(org, "dv360")
    finally:
        client.close()
    return org


def add_clickhouse_rows(dep: Deployment, org: str, n: int) -> None:
    params = {"org": org, "camp": str(uuid.uuid4()), "n": n}
    dep.ch.command(
        "INSERT INTO campaign_metrics_raw (timestamp, org_id, campaign_id, dsp_type, impressions,"
        " clicks, conversions, spend, revenue) SELECT now() - number * 600, {org:UUID},"
        " {camp:UUID}, 'dv360', number, 1, 0, 1.25, 2.5 FROM numbers({n:UInt32})",
        parameters=params)
    dep.ch.command(
        "INSERT INTO user_events (timestamp, org_id, user_id, session_id, event_type,"
        " resource_type, resource_id, properties) SELECT now64(3) - number, {org:UUID},"
        " {camp:UUID}, 's', 'click', 'campaign', toString(number), '{}' FROM numbers({n:UInt32})",
        parameters=params)
    dep.ch.command(
        "INSERT INTO api_logs (timestamp, org_id, user_id, request_id, method, path,"
        " status_code, duration_ms, dsp_type) SELECT now64(3) - number, {org:UUID}, {camp:UUID},"
        " toString(number), 'GET', '/campaigns', 200, number, 'dv360' FROM numbers({n:UInt32})",
        parameters=params)


def settle(dep: Deployment) -> None:
    """Merge every ClickHouse table fully, so rollup checksums compare row for row."""
    for (name,) in dep.ch.query("SELECT name FROM system.tables WHERE database ="
                                " currentDatabase() AND engine LIKE '%MergeTree'").result_rows:
        dep.ch.command(f"OPTIMIZE TABLE `{name}` FINAL")


def digest(dep: Deployment, org: str) -> dict[str, dict[str, str]]:
    settle(dep)
    return tenant.checksums(dep.endpoints, org, redis_prefix=dep.prefix)


def counts(dep: Deployment, org: str) -> dict[str, dict[str, int]]:
    return tenant.remaining(dep.endpoints, uuid.UUID(org), redis_prefix=dep.prefix)


def differences(first: dict[str, dict[str, dict[str, str]]],
                second: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    """Where two ``{org: digest}`` maps differ: ``org/store/name``."""
    found = []
    for org in sorted(set(first) | set(second)):
        a, b = first.get(org, {}), second.get(org, {})
        for store in sorted(set(a) | set(b)):
            for name in sorted(set(a.get(store, {})) | set(b.get(store, {}))):
                if a.get(store, {}).get(name) != b.get(store, {}).get(name):
                    found.append(f"{org}/{store}/{name}")
    return found


@pytest.fixture
def elsewhere(deployment: Deployment, pg_template: tuple[str, str], ch_target: str,
              stack_home: Path) -> Iterator[Deployment]:
    """A second deployment: its own PostgreSQL and ClickHouse databases, another Redis prefix."""
    admin, template = pg_template
    name = fresh_name()
    url = create_database(admin, name, template=template)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    target = url_for(ch_target, stack_home, f"t_{uuid.uuid4().hex[:12]}")
    try:
        with ch_connect(target) as client:
            try:
                Migrator(driver_for(client, url), MIGRATIONS).up()
                yield Deployment(deployment.endpoints.replace(postgres=url, clickhouse=target),
                                 prefix, client)
            finally:
                client.command(f"DROP DATABASE IF EXISTS {client.database} SYNC")
                client.command(f"DROP NAMED COLLECTION IF EXISTS "
                               f"{collection_name(str(client.database))}")
    finally:
        redis = deployment.redis()
        delete_prefix(redis, prefix)
        redis.close()
        drop_database(admin, name)

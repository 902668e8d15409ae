"""Seed datasets: the spec's test data, a deterministic demo, the load generator, clear."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from platformdb import auth, clickhouse, embedded, secrets
from platformdb.errors import ValidationError
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.ops import seed
from platformdb.postgres import APP_ROLE, tenant_transaction
from platformdb.stores.clickhouse.dictionaries import NOWHERE
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders
from platformdb.stores.redis.driver import RedisDriver
from platformdb.stores.redis.driver import migrations as redis_migrations
from platformdb.types import Endpoints
from tests.conftest import create_database, drop_database

TODAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
REDIS_DATABASE = 11
"""The embedded Redis database these tests seed (flushed after each): never the stack's own."""


@pytest.fixture
def stores(migrated_url: str, stack_home: Path) -> Iterator[Endpoints]:
    """A migrated PostgreSQL database, a migrated ClickHouse database, the embedded Redis."""
    database = f"seed_{uuid.uuid4().hex[:10]}"
    config = Endpoints(postgres=migrated_url,
                       clickhouse=f"chdb://{stack_home / 'test-clickhouse'}?database={database}",
                       redis=embedded.EmbeddedRedis(stack_home).url().rsplit("/", 1)[0]
                       + f"/{REDIS_DATABASE}", home=stack_home)
    with clickhouse.connect(config.clickhouse) as client:
        driver = ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE))
        Migrator(driver, discover(migrations_dir("clickhouse"))).up()
    assert config.redis is not None and config.clickhouse is not None
    redis_driver = RedisDriver(config.redis)  # the library the demo's Redis part calls
    Migrator(redis_driver, redis_migrations()).up()
    redis_driver.close()
    yield config
    with clickhouse.connect(config.clickhouse) as client:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    flushed = RedisDriver(config.redis)
    flushed.client.flushdb()
    flushed.close()


def rows(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


@pytest.mark.slow
def test_test_dataset_matches_the_spec_item_by_item(stores: Endpoints) -> None:
    url = stores.postgres or ""
    seed.seed_test(stores)
    seed.seed_test(stores)  # idempotent
    assert rows(url, "SELECT name FROM organizations") == [("Test Organization",)]
    users = dict(rows(url, "SELECT email, password_hash FROM users"))
    assert set(users) == {"admin@test.com", "user@test.com"}
    for email, password in (("admin@test.com", "Admin#Test2026"), ("user@test.com",
                                                                    "User#Test2026")):
        assert auth.password_problems(password) == []
        assert auth.verify_password(password, users[email])
        assert not auth.needs_rehash(users[email], cost=auth.DEFAULT_COST)
    (org, connector, blob, key_id), = rows(
        url, "SELECT org_id, id, credentials_encrypted, credentials_key_id FROM dsp_connectors")
    assert key_id == "dev-seed-2026"
    assert json.loads(secrets.decrypt(secrets.KeyRing.parse(seed.DEV_SECRET_KEYS), blob,
                                      org_id=org, record_id=connector)) == {
        "client_id": "test-dv360-client", "client_secret": "dev-only-not-a-secret",
        "refresh_token": "dev-only-refresh-token"}
    roles = set(rows(url, "SELECT u.email, r.role FROM user_roles r JOIN users u"
                          " ON u.org_id = r.org_id AND u.id = r.user_id"))
    assert roles == {("admin@test.com", "owner"), ("admin@test.com", "admin"),
                     ("user@test.com", "campaign_manager")}
    assert rows(url, "SELECT name, dsp_type FROM dsp_connectors") == [("Test DV360", "dv360")]
    assert rows(url, "SELECT name, status FROM campaigns") == [("Test Campaign Q1 2026", "active")]
    assert rows(url, "SELECT count(DISTINCT role) FROM role_permissions") == [(5,)]
    assert rows(url, "SELECT count(*) > 20 FROM permissions") == [(True,)]


def demo_totals(url: str) -> set[tuple[Any, ...]]:
    return set(rows(url, "SELECT org_id, sum(spend), sum(impressions) FROM campaign_metrics"
                         " GROUP BY org_id"))


@pytest.mark.slow
def test_demo_is_deterministic_and_the_stores_agree(stores: Endpoints) -> None:
    url = stores.postgres or ""
    seed.seed_demo(stores, seed=7, today=TODAY)
    first = seed.checksums(url)
    seed.seed_demo(stores, seed=7, today=TODAY)
    assert seed.checksums(url) == first
    statuses = {s for (s,) in rows(url, "SELECT DISTINCT status FROM campaigns")}
    assert statuses == {"draft", "pending_approval", "active", "paused", "completed", "archived"}
    assert {r for (r,) in rows(url, "SELECT DISTINCT role FROM user_roles")} == {
        "owner", "admin", "campaign_manager", "analyst", "viewer"}
    with clickhouse.connect(stores.clickhouse) as client:
        ch = {(o, s, i) for o, s, i in clickhouse.rows(
            client, "SELECT org_id, toDecimal128(sum(spend), 2), sum(impressions)"
            " FROM campaign_metrics_daily GROUP BY org_id")}
    assert demo_totals(url) == ch and len(ch) == 3
    seed.seed_demo(stores, seed=8, today=TODAY)
    assert seed.checksums(url) != first
    keys = seed.seed_keyring()
    connectors = rows(url, "SELECT org_id, id, dsp_type, credentials_encrypted FROM dsp_connectors")
    assert len(connectors) == 7
    for org, connector, dsp, blob in connectors:
        plain = json.loads(secrets.decrypt(keys, blob, org_id=org, record_id=connector))
        assert plain["client_id"] == f"demo-{dsp}-client"
    (password_hash,), = rows(url, "SELECT DISTINCT password_hash FROM users")
    assert auth.verify_password("Demo#2026", password_hash)
    assert rows(url, "SELECT count(*), count(DISTINCT org_id), min(db_user::text) = current_user"
                     " FROM audit_logs WHERE action = 'LOGIN'") == [(3, 3, True)]


@pytest.mark.slow
def test_every_seeded_tenant_row_stays_in_its_tenant(stores: Endpoints) -> None:
    url = stores.postgres or ""
    seed.seed_demo(stores, seed=1, today=TODAY)
    seed.seed_test(stores)
    orgs = [o for (o,) in rows(url, "SELECT id FROM organizations")]
    assert len(orgs) == 4
    with psycopg.connect(url, autocommit=True) as conn:
        for table in seed.TENANT_TABLES:
            key = sql.Identifier("id" if table == "organizations" else "org_id")
            for org in orgs:
                owner = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                    sql.Identifier(table), key), (org,)).fetchone()
                with tenant_transaction(conn, org, role=APP_ROLE):
                    seen = conn.execute(sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1").format(
                        key, sql.Identifier(table))).fetchall()
                assert seen == ([(org, owner[0])] if owner and owner[0] else []), table


@pytest.mark.slow
def test_clear_keeps_schema_and_reference_data(stores: Endpoints) -> None:
    url = stores.postgres or ""
    seed.seed_demo(stores, seed=1, today=TODAY)
    reference = rows(url, "SELECT count(*) FROM permissions")
    seed.clear(stores, force=True)
    assert rows(url, "SELECT count(*) FROM organizations") == [(0,)]
    assert rows(url, "SELECT count(*) FROM campaign_metrics") == [(0,)]
    assert rows(url, "SELECT count(*) FROM permissions") == reference
    with clickhouse.connect(stores.clickhouse) as client:
        assert clickhouse.rows(client, "SELECT count() FROM campaign_metrics_raw") == [(0,)]
        assert clickhouse.rows(client, "SELECT count() FROM system.tables"
                                       " WHERE database = currentDatabase()"
                                       " AND name = 'campaign_metrics_daily'") == [(1,)]
    seed.seed_test(stores)  # the schema is intact: seeding works again


@pytest.mark.slow
def test_clear_refuses_a_database_that_does_not_look_like_development(
        pg_admin_url: str, migrated_template: str, stores: Endpoints) -> None:
    from tests.conftest import fresh_name

    name = fresh_name("platform_prod")
    url = create_database(pg_admin_url, name, template=migrated_template)
    try:
        prod = stores.replace(postgres=url)
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'Keep', 'keep')",
                         (uuid.uuid4(),))
        with pytest.raises(ValidationError, match="does not look like a development database"):
            seed.clear(prod)
        assert rows(url, "SELECT name FROM organizations") == [("Keep",)]
    finally:
        drop_database(pg_admin_url, name)


def metric_indexes(url: str) -> tuple[list[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """campaign_metrics' own index definitions, and (leaf, index count) of its partitions."""
    parent = rows(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                       " AND tablename = 'campaign_metrics' ORDER BY 1")
    leaves = set(rows(url, "SELECT p.relid::regclass::text, count(i.indexrelid)"
                           " FROM pg_partition_tree('campaign_metrics') p"
                           " LEFT JOIN pg_index i ON i.indrelid = p.relid"
                           " WHERE p.isleaf GROUP BY 1"))
    return parent, leaves


@pytest.mark.slow
def test_a_small_load_has_the_expected_counts_and_is_refused_twice(stores: Endpoints) -> None:
    url = stores.postgres or ""
    parent_before, _ = metric_indexes(url)
    shape = seed.load.plan(0.002)
    seen: dict[str, int] = {}
    report = seed.seed_load(stores, 0.002, today=TODAY,
                            progress=lambda what, n: seen.__setitem__(what, seen.get(what, 0) + n))
    assert shape.orgs == 2 and report.counts["campaign_metrics"] == shape.metrics == 20_000
    assert rows(url, "SELECT count(*) FROM organizations") == [(2,)]
    assert rows(url, "SELECT count(*) FROM users") == [(100,)]
    assert rows(url, "SELECT count(*) FROM campaigns") == [(200,)]
    assert rows(url, "SELECT count(*) FROM campaign_metrics") == [(20_000,)]
    expected = sum((c * 7919 + d * 104_729) % 100_000 for c in range(200) for d in range(100))
    assert rows(url, "SELECT sum(spend) * 100, min(spend) >= 0 FROM campaign_metrics") == [
        (expected, True)]  # the binary COPY encodes numerics exactly
    assert seen["campaign_metrics"] == 20_000 and seen["clickhouse raw"] == 100_000
    # the indexes dropped for the load are back, on the parent and on every partition
    parent_after, leaves = metric_indexes(url)
    assert parent_after == parent_before and len(parent_after) == 2
    assert {count for _, count in leaves} == {2}
    with pytest.raises(psycopg.errors.UniqueViolation):
        rows(url, "INSERT INTO campaign_metrics SELECT * FROM campaign_metrics LIMIT 1")
    with clickhouse.connect(stores.clickhouse) as client:
        assert clickhouse.rows(client, "SELECT count() FROM campaign_metrics_raw") == [(100_000,)]
    with pytest.raises(ValidationError, match="already there"):
        seed.seed_load(stores, 0.002, today=TODAY)
    (password_hash,), = rows(url, "SELECT DISTINCT password_hash FROM users")
    assert auth.verify_password("Load#2026", password_hash)


@pytest.mark.slow
def test_a_failed_load_leaves_nothing_behind(stores: Endpoints) -> None:
    url = stores.postgres or ""

    def boom(what: str, _n: int) -> None:
        if what == "campaign_metrics":
            raise RuntimeError("interrupted")

    before = metric_indexes(url)
    with pytest.raises(RuntimeError, match="interrupted"):
        seed.seed_load(stores, 0.001, today=TODAY, progress=boom)
    assert rows(url, "SELECT count(*) FROM organizations") == [(0,)]
    assert metric_indexes(url) == before  # the indexes dropped for the load are rolled back
    with clickhouse.connect(stores.clickhouse) as client:
        assert clickhouse.rows(client, "SELECT count() FROM campaign_metrics_raw") == [(0,)]


@pytest.mark.slow
def test_load_replace_swaps_just_the_previous_load(stores: Endpoints) -> None:
    url = stores.postgres or ""
    seed.seed_test(stores)
    seed.seed_load(stores, 0.001, today=TODAY)
    with pytest.raises(ValidationError) as refused:
        seed.seed_load(stores, 0.002, today=TODAY)
    assert refused.value.hint is not None and refused.value.hint.flag == "--replace"
    report = seed.seed_load(stores, 0.002, today=TODAY, replace=True)
    assert "replacing the previous load" in report.notes[-1]
    assert rows(url, "SELECT count(*) FROM organizations WHERE slug LIKE %s", "load-%") == [(2,)]
    assert rows(url, "SELECT name FROM organizations WHERE slug NOT LIKE %s", "load-%") == [
        ("Test Organization",)]  # the test data stays
    assert rows(url, "SELECT count(*) FROM users WHERE email LIKE %s", "%@test.com") == [(2,)]
    assert rows(url, "SELECT count(*) FROM campaign_metrics") == [(20_000,)]
    with clickhouse.connect(stores.clickhouse) as client:
        assert clickhouse.rows(client, "SELECT count() FROM campaign_metrics_raw") == [(100_000,)]
    # and back down to one org: the second one is gone from both stores
    seed.seed_load(stores, 0.001, today=TODAY, replace=True)
    assert rows(url, "SELECT count(*) FROM organizations WHERE slug LIKE %s", "load-%") == [(1,)]
    with clickhouse.connect(stores.clickhouse) as client:
        assert clickhouse.rows(client, "SELECT count() FROM campaign_metrics_raw") == [(50_000,)]


@pytest.mark.slow
def test_demo_metrics_land_in_their_months_and_the_report_is_what_is_stored(
        stores: Endpoints) -> None:
    url = stores.postgres or ""
    report = seed.seed_demo(stores, seed=3, today=TODAY)
    total = rows(url, "SELECT count(*) FROM campaign_metrics")[0][0]
    assert total > 0
    assert rows(url, "SELECT count(*) FROM partitions.campaign_metrics_default") == [(0,)]
    assert rows(url, "SELECT count(*) FROM partitions.audit_logs_default") == [(0,)]
    with clickhouse.connect(stores.clickhouse) as client:
        for table in ("campaign_metrics_raw", "campaign_metrics_hourly",
                      "campaign_metrics_daily"):
            (stored,), = clickhouse.rows(client, f"SELECT count() FROM {table}")
            assert report.counts[f"clickhouse {table}"] == stored
    assert report.counts["campaign_metrics"] == total

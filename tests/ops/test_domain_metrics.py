"""Domain metrics: what the on-call needs that no generic exporter has, read from real stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.client import Redis

from platformdb.backup import state as backup_state
from platformdb.errors import ValidationError
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.ops import backup as stores
from platformdb.ops import exporter
from platformdb.ops.domain_metrics import (
    Memo,
    backup_metrics,
    migration_metrics,
    partition_metrics,
    redis_metrics,
    sync_metrics,
)
from platformdb.ops.stats import StatsConfig, collect
from platformdb.redis import Cache, JobQueue, Limit, RateLimiter, SessionStore, connect, functions
from platformdb.stores import PostgresStore
from platformdb.stores.postgres.driver import PostgresDriver
from platformdb.stores.postgres.partitions import ensure
from platformdb.stores.redis.acl import apply_acl_users, roles
from platformdb.types import Endpoints, Metric
from tests.redis.helpers import delete_prefix


def value(metrics: list[Metric], name: str, **labels: str) -> float:
    found = [m.value for m in metrics if m.name == name and all(
        m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, [(m.name, m.labels) for m in metrics])
    return found[0]


# ------------------------------------------------------------------ migrations


@pytest.mark.slow
def test_migration_metrics_count_pending_then_flag_an_edited_ledger_as_drift(pg_url: str) -> None:
    files = discover(migrations_dir("postgresql"))
    before = migration_metrics(PostgresStore(pg_url))
    assert value(before, "pending", store="postgresql") == len(files)
    assert value(before, "applied", store="postgresql") == 0
    assert value(before, "drift", store="postgresql") == 0
    driver = PostgresDriver(pg_url)
    try:
        Migrator(driver, files).up()
    finally:
        driver.close()
    after = migration_metrics(PostgresStore(pg_url))
    assert value(after, "pending", store="postgresql") == 0
    assert value(after, "applied", store="postgresql") == len(files)
    assert value(after, "drift", store="postgresql") == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE platformdb.schema_migrations SET checksum = 'edited'"
                     " WHERE version = 1")
    assert value(migration_metrics(PostgresStore(pg_url)), "drift", store="postgresql") == 1


# ------------------------------------------------------------------ backups


@pytest.mark.slow
def test_a_backup_is_recorded_as_the_last_good_one_and_its_age_reported(
        migrated_url: str, tmp_path: Path) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=None)
    before = backup_metrics(tmp_path, ["postgresql"])
    assert value(before, "last_success_timestamp_seconds", store="postgresql") == 0
    started = datetime.now(UTC)
    [folder] = stores.backup(found, ["postgresql"], tmp_path)
    metrics = backup_metrics(tmp_path, ["postgresql", "redis"])
    stamp = value(metrics, "last_success_timestamp_seconds", store="postgresql")
    assert started.timestamp() <= stamp <= datetime.now(UTC).timestamp()
    assert value(metrics, "last_success_age_seconds", store="postgresql") < 120
    assert value(metrics, "last_success_size_bytes", store="postgresql") > 0
    assert value(metrics, "last_success_timestamp_seconds", store="redis") == 0
    recorded = backup_state.last_good(tmp_path)["postgresql"]
    assert recorded.folder == folder.name


@pytest.mark.slow
def test_a_backup_whose_files_do_not_match_its_manifest_is_not_recorded(
        migrated_url: str, tmp_path: Path) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=None)
    [folder] = stores.backup(found, ["postgresql"], tmp_path)
    first = backup_state.last_good(tmp_path)["postgresql"]
    dump = folder / "postgresql.dump"
    dump.write_bytes(dump.read_bytes()[:-10])  # truncated on disk
    later = datetime.now(UTC)
    with pytest.raises(ValidationError, match="does not match"):
        backup_state.verify_and_record(tmp_path, "postgresql", folder, later, later)
    assert backup_state.last_good(tmp_path)["postgresql"] == first


# ------------------------------------------------------------------ PostgreSQL


def add_sync_run(url: str, org: uuid.UUID, day: date, status: str,
                 created: datetime) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO etl_jobs (org_id, job_type, status, params, created_at)"
                     " VALUES (%s, 'sync_daily', %s, %s, %s)",
                     (org, status, json.dumps({"from": day.isoformat(), "to": day.isoformat()}),
                      created))


@pytest.fixture
def org_url(migrated_url: str) -> Iterator[tuple[str, uuid.UUID]]:
    org = uuid.uuid4()
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'O', %s)",
                     (org, f"o-{org.hex[:8]}"))
    yield migrated_url, org


@pytest.mark.slow
def test_sync_daily_lag_counts_from_the_end_of_the_last_day_synced(
        org_url: tuple[str, uuid.UUID]) -> None:
    url, org = org_url
    never = sync_metrics(url)
    assert value(never, "sync_daily_lag_seconds") == float("inf")
    now = datetime(2026, 1, 7, 6, 0, tzinfo=UTC)
    add_sync_run(url, org, date(2026, 1, 5), "succeeded", now - timedelta(days=1))
    metrics = sync_metrics(url, now=now)
    assert value(metrics, "sync_daily_last_synced_day_timestamp_seconds") == datetime(
        2026, 1, 5, tzinfo=UTC).timestamp()
    assert value(metrics, "sync_daily_lag_seconds") == 30 * 3600  # since 2026-01-06 00:00
    assert value(metrics, "sync_daily_last_run_success", status="succeeded") == 1
    add_sync_run(url, org, date(2026, 1, 6), "failed", now)
    failed = sync_metrics(url, now=now)
    assert value(failed, "sync_daily_last_run_success", status="failed") == 0
    assert value(failed, "sync_daily_lag_seconds") == 30 * 3600  # a failed day is not synced


@pytest.mark.slow
def test_partitions_ahead_count_the_months_after_this_one(migrated_url: str) -> None:
    today = date(2031, 5, 17)
    assert value(partition_metrics(migrated_url, today), "partitions_months_ahead",
                 table="campaign_metrics") == -1
    ensure(migrated_url, months_ahead=4, today=today)
    metrics = partition_metrics(migrated_url, today)
    assert value(metrics, "partitions_months_ahead", table="campaign_metrics") == 4
    assert value(metrics, "partitions_months_ahead", table="audit_logs") == 4
    assert value(partition_metrics(migrated_url, date(2031, 8, 2)), "partitions_months_ahead",
                 table="audit_logs") == 1


# ------------------------------------------------------------------ Redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    client = connect(redis_url)
    assert isinstance(client, Redis)
    functions.load(client)
    name = f"t{uuid.uuid4().hex[:8]}:"
    yield name
    delete_prefix(client, name)
    client.close()


def test_queues_report_each_state_the_next_jobs_age_and_their_events(
        redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    queue = JobQueue(client, "reports", prefix=prefix, max_attempts=1)
    for n in range(4):
        queue.enqueue({"n": n}, org_id="org_1")
    queue.enqueue({"n": "later"}, org_id="org_2", delay=3600)
    claimed = queue.claim(2)
    assert queue.retry(claimed[0], "boom") == "dead"  # one attempt only: dead-lettered
    metrics = redis_metrics(redis_url, prefix=prefix)
    states = {m.labels["state"]: m.value for m in metrics
              if m.name == "queue_jobs" and m.labels["queue"] == "reports"}
    assert states == {"ready": 2, "running": 1, "delayed": 1, "dead": 1}
    assert 0 <= value(metrics, "queue_oldest_ready_job_age_seconds", queue="reports") < 60
    assert value(metrics, "queue_job_events", queue="reports", event="enqueued") == 5
    assert value(metrics, "queue_job_events", queue="reports", event="dead") == 1
    # named queues only: another queue is not reported, one that does not exist reports zeros
    named = redis_metrics(redis_url, prefix=prefix, queues=["nothing_here"])
    assert {m.labels["queue"] for m in named if m.name == "queue_jobs"} == {"nothing_here"}
    assert value(named, "queue_oldest_ready_job_age_seconds", queue="nothing_here") == 0
    client.close()


def test_rate_limit_decisions_are_counted_per_dsp_and_reach_redis_in_batches(
        redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, Limit(2, 60), prefix=prefix)  # flushes every 10 s
    for _ in range(3):
        limiter.allow("org_1", "dv360")
    limiter.allow("org_2", "ttd")
    assert not [m for m in redis_metrics(redis_url, prefix=prefix)
                if m.name == "ratelimit_decisions"]  # still in the process
    limiter.flush_stats()
    metrics = redis_metrics(redis_url, prefix=prefix)
    assert value(metrics, "ratelimit_decisions", dsp="dv360", decision="allowed") == 2
    assert value(metrics, "ratelimit_decisions", dsp="dv360", decision="denied") == 1
    assert value(metrics, "ratelimit_decisions", dsp="ttd", decision="allowed") == 1
    eager = RateLimiter(client, Limit(1, 60), prefix=prefix, stats_interval=0)
    eager.allow_many([("org_3", "dv360"), ("org_3", "dv360")])  # due at once: flushed
    metrics = redis_metrics(redis_url, prefix=prefix)
    assert value(metrics, "ratelimit_decisions", dsp="dv360", decision="allowed") == 3
    assert value(metrics, "ratelimit_decisions", dsp="dv360", decision="denied") == 2
    client.close()


def test_cache_lookups_give_a_hit_ratio_per_namespace(redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    cache = Cache(client, "campaign", prefix=prefix, stats_interval=3600)
    assert cache.get("1", org_id="org_1") is None  # miss
    cache.set("1", {"v": 1}, org_id="org_1")
    for _ in range(3):
        assert cache.get("1", org_id="org_1") == {"v": 1}  # hits
    assert cache.get_or_compute("2", lambda: 2, org_id="org_1") == 2  # miss, computed
    assert cache.get_or_compute("2", lambda: 3, org_id="org_1") == 2  # hit
    cache.flush_stats()
    metrics = redis_metrics(redis_url, prefix=prefix)
    assert value(metrics, "cache_lookups", namespace="campaign", result="hit") == 4
    assert value(metrics, "cache_lookups", namespace="campaign", result="miss") == 2
    assert value(metrics, "cache_lookups", namespace="campaign", result="stale") == 0
    assert value(metrics, "cache_hit_ratio", namespace="campaign") == pytest.approx(4 / 6)
    client.close()


def test_live_sessions_are_counted_and_the_walk_is_kept_between_scrapes(
        redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    store = SessionStore(client, prefix=prefix)
    first = store.create("user_1", org_id="org_1")
    store.create("user_1", org_id="org_1")
    store.create("user_2", org_id="org_2")
    memo = Memo()
    assert value(redis_metrics(redis_url, prefix=prefix, memo=memo), "sessions_live") == 3
    assert store.revoke("user_1", first.session_id, org_id="org_1")
    kept = redis_metrics(redis_url, prefix=prefix, memo=memo, scan_interval=3600)
    assert value(kept, "sessions_live") == 3  # not walked again within the interval
    assert value(redis_metrics(redis_url, prefix=prefix, memo=memo, scan_interval=0),
                 "sessions_live") == 2
    client.close()


def test_the_monitor_user_reads_every_domain_metric_and_services_can_count(
        redis_url: str, prefix: str) -> None:
    """The ACL users of redis/scripts/acl_users.redis: limiters and caches may add their
    counters, the monitor user (the exporter's) reads them, the queues and the sessions."""
    admin = connect(redis_url)
    assert isinstance(admin, Redis)
    suffix = f"-{prefix.rstrip(':')}"
    passwords = {role: uuid.uuid4().hex for role in roles()}
    names = apply_acl_users(admin, passwords, prefix=prefix, user_suffix=suffix)

    def url_of(role: str) -> str:
        host_port = redis_url.split("://", 1)[1].split("@")[-1].split("/")[0]
        return f"redis://platformdb-{role.lower()}{suffix}:{passwords[role]}@{host_port}/0"

    try:
        limiter = RateLimiter(connect(url_of("RATELIMIT")), Limit(5, 60), prefix=prefix)
        limiter.allow("org_1", "dv360")
        limiter.flush_stats()
        cache = Cache(connect(url_of("CACHE")), "campaign", prefix=prefix)
        cache.get("x", org_id="org_1")
        cache.flush_stats()
        JobQueue(connect(url_of("QUEUE")), "etl", prefix=prefix).enqueue({}, org_id="org_1")
        SessionStore(connect(url_of("SESSIONS")), prefix=prefix).create("u", org_id="org_1")
        metrics = redis_metrics(url_of("MONITOR"), prefix=prefix)
        assert value(metrics, "ratelimit_decisions", dsp="dv360", decision="allowed") == 1
        assert value(metrics, "cache_lookups", namespace="campaign", result="miss") == 1
        assert value(metrics, "queue_jobs", queue="etl", state="ready") == 1
        assert value(metrics, "sessions_live") == 1
        assert limiter.tally.take() == {} and cache.tally.take() == {}  # nothing left behind
    finally:
        admin.execute_command("ACL", "DELUSER", *names)
        admin.close()


# ------------------------------------------------------------------ the exporter


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.slow
def test_the_exporter_serves_domain_metrics_and_reports_each_source(
        migrated_url: str, redis_url: str, prefix: str, tmp_path: Path) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=redis_url)
    JobQueue(connect(redis_url), "etl", prefix=prefix).enqueue({}, org_id="org_1")
    config = StatsConfig(backup_dir=tmp_path, redis_prefix=prefix)
    text = exporter.render(found, config)
    got = families(text)
    for name in ("platformdb_migrations_pending",
                 "platformdb_backup_last_success_timestamp_seconds",
                 "platformdb_etl_sync_daily_lag_seconds",
                 "platformdb_postgresql_partitions_months_ahead", "platformdb_redis_queue_jobs",
                 "platformdb_redis_sessions_live"):
        assert name in got, name
    assert got["platformdb_redis_queue_job_events"].type == "counter"
    success = {s.labels["collector"]: s.value
               for s in got["platformdb_scrape_collector_success"].samples}
    assert success["postgresql_migrations"] == 1 and success["redis_domain"] == 1
    assert success["backups"] == 1


@pytest.mark.slow
def test_a_failing_domain_source_is_reported_and_the_others_still_are(migrated_url: str) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis="redis://127.0.0.1:1/0")
    got = families(exporter.render(found))
    up = {s.labels["store"]: s.value for s in got["platformdb_up"].samples}
    assert up["postgresql"] == 1 and up["redis"] == 0
    success = {s.labels["collector"]: s.value
               for s in got["platformdb_scrape_collector_success"].samples}
    assert success["redis_domain"] == 0 and success["redis_migrations"] == 0
    assert success["sync_daily"] == 1 and success["partitions"] == 1
    assert "platformdb_migrations_pending" in got
    metrics, errors = collect(found, ["postgresql", "redis"])
    assert any(line.startswith("redis_domain: ") for line in errors)
    assert any(m.store == "migrations" for m in metrics)

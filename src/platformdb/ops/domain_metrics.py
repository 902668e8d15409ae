"""Domain metrics: what the platform's on-call needs and generic exporters cannot have.

postgres_exporter, redis_exporter and ClickHouse's own ``/metrics`` serve the
servers' internals (docs/OPERATIONS.md runs them side by side); these read the
platform's own state:

- migrations per store: pending, applied, drift (:func:`migration_metrics`);
- the last good backup per store: when, how big (:func:`backup_metrics`, from
  the record ``platformdb backup`` keeps, :mod:`platformdb.backup.state`);
- ``etl sync-daily``: the last day synced, its lag, the last run's outcome, from
  ``etl_jobs`` (:func:`sync_metrics`);
- monthly partitions created ahead of today (:func:`partition_metrics`);
- Redis: job queues (ready, running, delayed, dead, the age of the job next in
  line, lifetime counters) per job type, rate-limit decisions per DSP, cache
  lookups and hit ratio per namespace, live sessions (:func:`redis_metrics`).

Every label has a bounded set of values (stores, tables, job types, DSPs, cache
namespaces): nothing is labelled by org or user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from platformdb.backup import state as backup_state
from platformdb.postgres import connect
from platformdb.redis import client as redis_client
from platformdb.redis import codec
from platformdb.redis.keys import KeySpace
from platformdb.stores import registry
from platformdb.stores.base import Store
from platformdb.stores.postgres.partitions import DATE_PARTITIONED, add_months, month_start
from platformdb.types import Metric

T = TypeVar("T")

PENDING_STATES = ("pending", "changed", "not on server")
"""Migration states that ``migrate up`` would change (Redis' library counts as one)."""
DRIFT_STATES = ("edited", "missing")
SCAN_COUNT = 1000


@dataclass
class Memo:
    """Values that are expensive to read, kept between scrapes for ``ttl`` seconds."""

    entries: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: str, ttl: float, read: Callable[[], T]) -> T:
        now = time.monotonic()
        found = self.entries.get(key)
        if found is not None and now - found[0] < ttl:
            value: T = found[1]
            return value
        value = read()
        self.entries[key] = (now, value)
        return value


# ------------------------------------------------------------------ migrations


def migration_metrics(store: Store) -> list[Metric]:
    """Pending and applied migrations of ``store``, and whether its ledger drifted."""
    with store.open_migrator() as migrator:
        rows = migrator.status()
        problems = migrator.problems(migrator.driver.applied())
        # The gauge is about the ledger and the files (edited, missing, gaps); schema
        # drift against the recorded fingerprint is health's (Migrator.recorded_drift).
    labels = {"store": store.name}
    pending = sum(1 for row in rows if row.state in PENDING_STATES)
    applied = sum(1 for row in rows if row.state == "applied")
    drifted = bool(problems) or any(row.state in DRIFT_STATES for row in rows)
    return [
        Metric("migrations", "pending", float(pending),
               "migrations (or, for Redis, the functions library) `migrate up` would apply",
               labels),
        Metric("migrations", "applied", float(applied),
               "migrations applied and unchanged since", labels),
        Metric("migrations", "drift", 1.0 if drifted else 0.0,
               "1 when applied migration files were edited or removed, or the ledger has gaps "
               "(`platformdb migrate verify` says which)", labels),
    ]


# ------------------------------------------------------------------ backups


def backup_metrics(backup_dir: Path, stores: Sequence[str] | None = None,
                   now: float | None = None) -> list[Metric]:
    """The last good backup of each store recorded under ``backup_dir``.

    A store never backed up there reports timestamp 0 (its age is then the time
    since 1970, so the "backup too old" alert fires for it too).
    """
    found = backup_state.last_good(backup_dir)
    current = time.time() if now is None else now
    metrics: list[Metric] = []
    for store in registry.names() if stores is None else stores:
        good = found.get(store)
        labels = {"store": store}
        stamp = good.finished_at.timestamp() if good else 0.0
        metrics.append(Metric("backup", "last_success_timestamp_seconds", stamp,
                              "when the last good backup (manifest written and every file "
                              "verified against it) finished, Unix time", labels, "seconds"))
        metrics.append(Metric("backup", "last_success_age_seconds", max(0.0, current - stamp),
                              "seconds since the last good backup finished", labels, "seconds"))
        if good is not None:
            metrics.append(Metric("backup", "last_success_size_bytes", float(good.bytes),
                                  "size of the last good backup", labels, "bytes"))
            metrics.append(Metric("backup", "last_success_duration_seconds", good.seconds,
                                  "how long the last good backup took", labels, "seconds"))
    drilled = backup_state.last_verified(backup_dir)
    metrics.append(Metric("backup", "last_verified_timestamp_seconds",
                          drilled.finished_at.timestamp() if drilled else 0.0,
                          "when the last backup set that passed its restore drill (`platformdb "
                          "backup verify`) was verified, Unix time (0: never)", {}, "seconds"))
    if drilled is not None:
        metrics.append(Metric("backup", "verify_duration_seconds", drilled.seconds,
                              "how long the last passing restore drill took: the measured "
                              "recovery time", {}, "seconds"))
    return metrics


# ------------------------------------------------------------------ PostgreSQL

SYNC_LAST_RUN = (
    "SELECT status, updated_at FROM etl_jobs WHERE job_type = 'sync_daily'"
    " ORDER BY created_at DESC, updated_at DESC LIMIT 1")
SYNC_LAST_DAY = (
    "SELECT max((params ->> 'to')::date) FROM etl_jobs"
    " WHERE job_type = 'sync_daily' AND status = 'succeeded'")
PARTITIONS = (
    "SELECT parent.relname, child.relname FROM pg_inherits i"
    " JOIN pg_class child ON child.oid = i.inhrelid"
    " JOIN pg_class parent ON parent.oid = i.inhparent"
    " JOIN pg_namespace n ON n.oid = parent.relnamespace"
    " WHERE n.nspname = 'public' AND parent.relname = ANY(%s)")


def sync_metrics(url: str, now: datetime | None = None) -> list[Metric]:
    """``etl sync-daily`` from its ``etl_jobs`` rows (one per org and run).

    Reading every tenant's rows needs a role that row-level security lets see
    them: a superuser, ``BYPASSRLS``, or a member of ``platform_etl``. A run that
    found no rows for any org records nothing, so a day without data looks unsynced.
    """
    current = now or datetime.now(UTC)
    with connect(url, autocommit=True) as conn:
        last_run = conn.execute(SYNC_LAST_RUN).fetchone()
        last_day_row = conn.execute(SYNC_LAST_DAY).fetchone()
    last_day: date | None = last_day_row[0] if last_day_row else None
    metrics = []
    if last_day is not None:
        day_start = datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC)
        synced_through = day_start + timedelta(days=1)
        metrics.append(Metric("etl", "sync_daily_last_synced_day_timestamp_seconds",
                              day_start.timestamp(), "the last day a successful sync-daily "
                              "covered (its 00:00 UTC), Unix time", {}, "seconds"))
        lag = max(0.0, (current - synced_through).total_seconds())
    else:
        lag = float("inf")
    metrics.append(Metric("etl", "sync_daily_lag_seconds", lag,
                          "time since the end of the last day synced to PostgreSQL "
                          "(+Inf: never synced)", {}, "seconds"))
    if last_run is not None:
        status, at = str(last_run[0]), last_run[1]
        metrics.append(Metric("etl", "sync_daily_last_run_timestamp_seconds", at.timestamp(),
                              "when the last sync-daily run last changed state, Unix time",
                              {}, "seconds"))
        metrics.append(Metric("etl", "sync_daily_last_run_success",
                              1.0 if status == "succeeded" else 0.0,
                              "1 when the last sync-daily run succeeded", {"status": status}))
    return metrics


def partition_metrics(url: str, today: date | None = None) -> list[Metric]:
    """Months after the current one that already have a partition, per date-partitioned table.

    Counted without a gap from this month: -1 when this month has no partition
    (its rows land in the default partition until ``partitions ensure`` runs).
    """
    with connect(url, autocommit=True) as conn:
        found = conn.execute(PARTITIONS, (list(DATE_PARTITIONED),)).fetchall()
    children: dict[str, set[str]] = {table: set() for table in DATE_PARTITIONED}
    for parent, child in found:
        children.setdefault(str(parent), set()).add(str(child))
    month = month_start(today or datetime.now(UTC).date())
    metrics = []
    for table, names in sorted(children.items()):
        ahead = -1
        while f"{table}_y{add_months(month, ahead + 1):%Ym%m}" in names and ahead < 240:
            ahead += 1
        metrics.append(Metric("postgresql", "partitions_months_ahead", float(ahead),
                              "months after the current one with a partition already created "
                              "(-1: not even this month's)", {"table": table}))
    return metrics


# ------------------------------------------------------------------ Redis


def redis_metrics(url: str, *, prefix: str = "", queues: Sequence[str] = (),
                  memo: Memo | None = None, scan_interval: float = 60.0) -> list[Metric]:
    """Queues, rate-limit decisions, cache lookups and live sessions of the Redis at ``url``.

    Counting live sessions and finding the queues (when ``queues`` names none) walk
    the keyspace with ``SCAN``: that result is kept for ``scan_interval`` seconds
    in ``memo`` (one walk per interval, however often Prometheus scrapes).
    """
    keys = KeySpace(prefix)
    memo = memo if memo is not None else Memo()
    client: Any = redis_client.connect(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        walked = memo.get(f"redis-scan:{url}:{prefix}", scan_interval,
                          lambda: _walk(client, keys))
        job_types = sorted(set(queues) | (set() if queues else set(walked.queues)))
        metrics = _queue_metrics(client, keys, job_types)
        metrics += _usage_metrics(client, keys)
    finally:
        client.close()
    metrics.append(Metric("redis", "sessions_live", float(walked.sessions),
                          f"sessions not yet expired or revoked (counted at most every "
                          f"{scan_interval:g} s)"))
    return metrics


@dataclass(frozen=True)
class Walked:
    sessions: int
    queues: list[str]


def _walk(client: Any, keys: KeySpace) -> Walked:
    sessions = sum(1 for _ in client.scan_iter(match=f"{keys.prefix}session:{{*}}:*",
                                               count=SCAN_COUNT))
    stats_suffix = "}:stats"
    queue_start = f"{keys.prefix}queue:{{"
    found = set()
    for raw in client.scan_iter(match=f"{queue_start}*{stats_suffix}", count=SCAN_COUNT):
        name = codec.text(raw)[len(queue_start):-len(stats_suffix)]
        if name and "}" not in name:
            found.add(name)
    return Walked(sessions, sorted(found))


QUEUE_COUNTERS = ("enqueued", "acked", "retried", "dead", "requeued", "released", "cancelled",
                  "redriven", "purged")


def _queue_metrics(client: Any, keys: KeySpace, job_types: list[str]) -> list[Metric]:
    if not job_types:
        return []
    pipe = client.pipeline(transaction=False)
    for job_type in job_types:
        ready, processing, _claims, delayed, dead, stats, _wake = keys.queue(job_type)
        pipe.llen(ready)
        pipe.llen(processing)
        pipe.zcard(delayed)
        pipe.llen(dead)
        pipe.hgetall(stats)
        pipe.lindex(ready, -1)  # pushed left, claimed right: the next job in line
    replies = pipe.execute()
    heads: dict[str, str] = {}
    metrics: list[Metric] = []
    for i, job_type in enumerate(job_types):
        ready_n, running_n, delayed_n, dead_n, counters, head = replies[i * 6:(i + 1) * 6]
        for state, count in (("ready", ready_n), ("running", running_n),
                             ("delayed", delayed_n), ("dead", dead_n)):
            metrics.append(Metric("redis", "queue_jobs", float(count),
                                  "jobs per state: ready, running (leased), delayed (not "
                                  "before a time, or backing off), dead (dead-lettered)",
                                  {"queue": job_type, "state": state}))
        counts = {codec.text(k): int(v) for k, v in (counters or {}).items()}
        for event in sorted(set(QUEUE_COUNTERS) | set(counts)):
            metrics.append(Metric("redis", "queue_job_events", float(counts.get(event, 0)),
                                  "jobs that went through each event since the queue was "
                                  "created", {"queue": job_type, "event": event},
                                  kind="counter"))
        if head is not None:
            heads[job_type] = codec.text(head)
    ages = _head_ages(client, keys, heads)
    for job_type in job_types:
        metrics.append(Metric("redis", "queue_oldest_ready_job_age_seconds",
                              ages.get(job_type, 0.0),
                              "how long the job next in line has waited since it was enqueued "
                              "(0: none ready)", {"queue": job_type}, "seconds"))
    return metrics


def _head_ages(client: Any, keys: KeySpace, heads: dict[str, str]) -> dict[str, float]:
    if not heads:
        return {}
    pipe = client.pipeline(transaction=False)
    order = sorted(heads)
    for job_type in order:
        pipe.hget(f"{keys.queue(job_type)[0]}:job:{heads[job_type]}", "enqueued_at")
    now_ms = time.time() * 1000
    ages = {}
    for job_type, enqueued in zip(order, pipe.execute(), strict=True):
        if enqueued is not None:
            ages[job_type] = max(0.0, (now_ms - int(codec.text(enqueued))) / 1000)
    return ages


def _usage_metrics(client: Any, keys: KeySpace) -> list[Metric]:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.stats("ratelimit"))
    pipe.hgetall(keys.stats("cache"))
    decisions, lookups = pipe.execute()
    metrics: list[Metric] = []
    for field_name, value in sorted(_fields(decisions).items()):
        dsp, _, decision = field_name.rpartition(":")
        metrics.append(Metric("redis", "ratelimit_decisions", float(value),
                              "rate-limit decisions per DSP, as counted by the limiters "
                              "(added every few seconds)", {"dsp": dsp, "decision": decision},
                              kind="counter"))
    per_namespace: dict[str, dict[str, int]] = {}
    for field_name, value in _fields(lookups).items():
        namespace, _, result = field_name.rpartition(":")
        per_namespace.setdefault(namespace, {})[result] = value
    for namespace, results in sorted(per_namespace.items()):
        for result in ("hit", "stale", "miss"):
            metrics.append(Metric("redis", "cache_lookups", float(results.get(result, 0)),
                                  "cache lookups per namespace: hit (fresh), stale (a stale "
                                  "value served), miss", {"namespace": namespace,
                                                          "result": result}, kind="counter"))
        total = sum(results.values())
        metrics.append(Metric("redis", "cache_hit_ratio",
                              results.get("hit", 0) / total if total else 1.0,
                              "fresh hits / all lookups since the counters began (use "
                              "rate() of cache_lookups_total for a recent ratio)",
                              {"namespace": namespace}))
    return metrics


def _fields(raw: Any) -> dict[str, int]:
    return {codec.text(k): int(v) for k, v in (raw or {}).items()}

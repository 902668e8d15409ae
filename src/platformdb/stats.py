"""The spec's key metrics for each store, as plain numbers.

PostgreSQL: connection count, query latency (pg_stat_statements when the
extension is installed), table sizes, index hit ratio, replication lag.
ClickHouse: query time, merges, disk and memory use.
Redis: memory, hit/miss ratio, command latency, evictions.

Every metric is a :class:`Metric` with a name, labels and a value, so the same
list prints as a table, as JSON, or as Prometheus text (:mod:`platformdb.exporter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from platformdb.config import Settings
from platformdb.errors import PlatformDBError
from platformdb.health import postgres_url, redis_url


@dataclass(frozen=True)
class Metric:
    store: str
    name: str
    value: float
    help: str
    labels: dict[str, str] = field(default_factory=dict)
    unit: str = ""


PG_QUERIES: dict[str, str] = {
    "connections": "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    "index_hit_ratio": (
        "SELECT coalesce(sum(idx_blks_hit)::float8"
        " / nullif(sum(idx_blks_hit) + sum(idx_blks_read), 0), 1)"
        " FROM pg_statio_user_indexes"),
    "table_sizes": (
        "SELECT c.relname, coalesce((SELECT sum(pg_total_relation_size(relid))"
        "  FROM pg_partition_tree(c.oid)), pg_total_relation_size(c.oid))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY 1"),
    "replication": (
        "SELECT application_name, coalesce(client_addr::text, 'local'),"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
        " coalesce(extract(epoch FROM replay_lag), 0)"
        " FROM pg_stat_replication"),
    "standby_lag": (
        "SELECT CASE WHEN pg_is_in_recovery() THEN"
        " coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)"
        " END"),
    "statements": (
        "SELECT coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0), coalesce(sum(calls), 0)"
        " FROM pg_stat_statements"),
}


def postgres_metrics(url: str) -> list[Metric]:
    from platformdb.postgres import connect

    metrics: list[Metric] = []
    with connect(url, autocommit=True) as conn:
        def one(query: str) -> float:
            row = conn.execute(query).fetchone()
            return float(row[0]) if row and row[0] is not None else 0.0

        metrics.append(Metric("postgresql", "connections", one(PG_QUERIES["connections"]),
                              "client connections open now"))
        metrics.append(Metric("postgresql", "index_hit_ratio", one(PG_QUERIES["index_hit_ratio"]),
                              "share of index block reads served from shared buffers"))
        for table, size in conn.execute(PG_QUERIES["table_sizes"]).fetchall():
            metrics.append(Metric("postgresql", "table_size_bytes", float(size or 0),
                                  "table size with indexes, TOAST and partitions",
                                  {"table": str(table)}, "bytes"))
        replicas = conn.execute(PG_QUERIES["replication"]).fetchall()
        for name, addr, lag_bytes, lag_seconds in replicas:
            labels = {"replica": str(name or addr)}
            metrics.append(Metric("postgresql", "replication_lag_bytes", float(lag_bytes or 0),
                                  "WAL bytes the replica has not replayed yet", labels, "bytes"))
            metrics.append(Metric("postgresql", "replication_lag_seconds", float(lag_seconds),
                                  "replay lag reported by the replica", labels, "seconds"))
        standby = conn.execute(PG_QUERIES["standby_lag"]).fetchone()
        if standby and standby[0] is not None:
            metrics.append(Metric("postgresql", "standby_replay_lag_bytes", float(standby[0]),
                                  "WAL received but not replayed (this server is a standby)",
                                  {}, "bytes"))
        if conn.execute("SELECT to_regclass('pg_stat_statements')").fetchone() != (None,):
            mean, calls = conn.execute(PG_QUERIES["statements"]).fetchone() or (0, 0)
            metrics.append(Metric("postgresql", "query_mean_latency_ms", float(mean),
                                  "mean execution time per statement (pg_stat_statements)",
                                  {}, "ms"))
            metrics.append(Metric("postgresql", "query_calls", float(calls),
                                  "statements executed (pg_stat_statements)"))
        else:
            started = _now()
            conn.execute("SELECT 1")
            metrics.append(Metric("postgresql", "query_mean_latency_ms", (_now() - started) * 1000,
                                  "round trip of SELECT 1 (pg_stat_statements not installed)",
                                  {"source": "probe"}, "ms"))
    return metrics


def _now() -> float:
    import time

    return time.perf_counter()


def redis_metrics(url: str) -> list[Metric]:
    import redis

    conn = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        info = conn.info()
        commands = conn.info("commandstats")
    finally:
        conn.close()
    hits, misses = float(info.get("keyspace_hits", 0)), float(info.get("keyspace_misses", 0))
    calls = sum(float(v.get("calls", 0)) for v in commands.values())
    usec = sum(float(v.get("usec", 0)) for v in commands.values())
    return [
        Metric("redis", "memory_used_bytes", float(info["used_memory"]), "memory in use", {},
               "bytes"),
        Metric("redis", "hit_ratio", hits / (hits + misses) if hits + misses else 1.0,
               "keyspace hits / (hits + misses)"),
        Metric("redis", "keyspace_hits", hits, "successful key lookups"),
        Metric("redis", "keyspace_misses", misses, "failed key lookups"),
        Metric("redis", "command_latency_us", usec / calls if calls else 0.0,
               "mean server-side time per command", {}, "microseconds"),
        Metric("redis", "evicted_keys", float(info.get("evicted_keys", 0)),
               "keys evicted by maxmemory"),
        Metric("redis", "connected_clients", float(info.get("connected_clients", 0)),
               "client connections"),
    ]


def clickhouse_metrics(settings: Settings) -> list[Metric]:
    from platformdb.clickhouse import target_of
    from platformdb.clickhouse.stats import clickhouse_metrics as collect

    result: list[Metric] = collect(target_of(settings))
    return result


def collect(settings: Settings, stores: list[str] | None = None) -> tuple[list[Metric], list[str]]:
    """Metrics of every reachable store, and one line per store that was not."""
    sources: dict[str, Callable[[], list[Metric]]] = {}
    pg, rd = postgres_url(settings), redis_url(settings)
    if pg:
        sources["postgresql"] = lambda: postgres_metrics(pg)
    if rd:
        sources["redis"] = lambda: redis_metrics(rd)
    sources["clickhouse"] = lambda: clickhouse_metrics(settings)
    metrics: list[Metric] = []
    errors: list[str] = []
    for store in stores or ["postgresql", "clickhouse", "redis"]:
        source = sources.get(store)
        if source is None:
            errors.append(f"{store}: not running or not configured")
            continue
        try:
            metrics.extend(source())
        except (PlatformDBError, OSError, ImportError) as exc:
            errors.append(f"{store}: {exc}")
        except Exception as exc:  # a store's driver error is reported, not fatal
            errors.append(f"{store}: {type(exc).__name__}: {exc}")
    return metrics, errors

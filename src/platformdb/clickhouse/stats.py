"""The spec's ClickHouse key metrics (query time, merges, disk, memory) and TTL state."""

from __future__ import annotations

import re

from platformdb.clickhouse import ClickHouse
from platformdb.types import Metric

QUERIES: dict[str, tuple[str, str]] = {
    "queries": (
        "SELECT toFloat64(sum(value)) FROM system.events WHERE event = 'Query'",
        "queries run since start"),
    "query_time_avg_seconds": (
        "SELECT toFloat64(if(q.v = 0, 0, t.v / q.v / 1000000)) FROM"
        " (SELECT sum(value) AS v FROM system.events WHERE event = 'QueryTimeMicroseconds') t,"
        " (SELECT sum(value) AS v FROM system.events WHERE event = 'Query') q",
        "average query execution time since start"),
    "merges_running": (
        "SELECT toFloat64(count()) FROM system.merges", "merges in progress"),
    "merges": (
        "SELECT toFloat64(sum(value)) FROM system.events WHERE event = 'Merge'",
        "merges completed since start"),
    "active_parts": (
        "SELECT toFloat64(count()) FROM system.parts WHERE active AND database = currentDatabase()",
        "active data parts of the platform database (merge backlog)"),
    "disk_bytes": (
        "SELECT toFloat64(sum(bytes_on_disk)) FROM system.parts"
        " WHERE active AND database = currentDatabase()",
        "bytes on disk of the platform database"),
    "rows": (
        "SELECT toFloat64(sum(rows)) FROM system.parts"
        " WHERE active AND database = currentDatabase()",
        "rows stored in the platform database"),
    "memory_bytes": (
        "SELECT toFloat64(sum(value)) FROM system.metrics WHERE metric = 'MemoryTracking'",
        "memory in use by the server"),
}


COUNTERS = ("queries", "merges")


def collect(client: ClickHouse) -> list[Metric]:
    metrics: list[Metric] = []
    for name, (sql, help_text) in QUERIES.items():
        rows = client.rows(sql)
        value = float(rows[0][0]) if rows and rows[0][0] is not None else 0.0
        metrics.append(Metric("clickhouse", name, value, help_text,
                              kind="counter" if name in COUNTERS else "gauge"))
    return metrics


def ttl_state(client: ClickHouse) -> dict[str, str]:
    """Each table's TTL clause (retention is ClickHouse's own job: rows expire in merges)."""
    state: dict[str, str] = {}
    for name, create in client.rows(
            "SELECT name, create_table_query FROM system.tables"
            " WHERE database = currentDatabase() AND engine LIKE '%MergeTree' ORDER BY name"):
        match = re.search(r"\bTTL (.+?)(?: SETTINGS |$)", str(create))
        state[str(name)] = match.group(1).strip() if match else "none"
    return state

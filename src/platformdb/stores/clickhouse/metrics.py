"""The spec's ClickHouse key metrics (query time, merges, disk, memory, rows) and TTL state.

``rows`` counts live rows: ``count()`` per MergeTree table, which ClickHouse
answers from part metadata and, for parts with lightweight deletes, from their
row mask, so deleted rows are not counted (``system.parts.rows`` still holds
them until a merge drops them).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from platformdb.clickhouse import connect, rows
from platformdb.types import Metric

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

WAIT = 5.0
"""Seconds a scrape waits for a chDB path another process has open."""

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
    "memory_bytes": (
        "SELECT toFloat64(sum(value)) FROM system.metrics WHERE metric = 'MemoryTracking'",
        "memory in use by the server"),
}


COUNTERS = ("queries", "merges")
"""Metrics that only grow: Prometheus exposes them as ``..._total`` counters."""


def live_rows(client: Client) -> int:
    """Rows of every MergeTree table of the database, lightweight-deleted rows excluded."""
    tables = [str(name) for (name,) in rows(
        client, "SELECT name FROM system.tables WHERE database = currentDatabase()"
                " AND engine LIKE '%MergeTree' ORDER BY name")]
    return sum(int(rows(client, "SELECT count() FROM {t:Identifier}", {"t": t})[0][0])
               for t in tables)


def collect(client: Client) -> list[Metric]:
    metrics: list[Metric] = []
    for name, (sql, help_text) in QUERIES.items():
        found = rows(client, sql)
        value = float(found[0][0]) if found and found[0][0] is not None else 0.0
        metrics.append(Metric("clickhouse", name, value, help_text,
                              kind="counter" if name in COUNTERS else "gauge"))
    metrics.append(Metric("clickhouse", "rows", float(live_rows(client)),
                          "live rows in the platform database (deleted rows not counted)"))
    return metrics


def clickhouse_metrics(url: str) -> list[Metric]:
    with connect(url, wait=WAIT) as client:
        return collect(client)


def ttl_state(client: Client) -> dict[str, str]:
    """Each table's TTL clause (retention is ClickHouse's own job: rows expire in merges)."""
    state: dict[str, str] = {}
    for name, create in rows(
            client, "SELECT name, create_table_query FROM system.tables"
                    " WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
                    " ORDER BY name"):
        match = re.search(r"\bTTL (.+?)(?: SETTINGS |$)", str(create))
        state[str(name)] = match.group(1).strip() if match else "none"
    return state

"""Seed data: ``test``, ``demo``, ``load`` and ``clear``, across the three stores.

- :func:`seed_test` runs ``postgresql/seed/test_data.sql``, the spec's small
  dataset (also runnable with ``psql -f``).
- :func:`seed_demo` (:mod:`.demo`) builds a deterministic, consistent demo:
  organizations, users of every role, connectors, campaigns in every status,
  90 days of hourly metrics in ClickHouse with PostgreSQL's daily metrics
  synced from them, notifications, audit history, sessions and jobs in Redis.
- :func:`seed_load` (:mod:`.load`) streams the load-test dataset at a scale
  factor: COPY into PostgreSQL, Arrow batches into ClickHouse.
- :func:`clear` removes all of it, keeping schema and reference data, and
  refuses a database that does not look like a development one unless forced.
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import sql

from platformdb.config import DEV_WORDS, development_url
from platformdb.errors import Hint, ValidationError, when_interrupted
from platformdb.ops.context import Context, context
from platformdb.ops.seed.base import (
    DEV_SECRET_KEYS,
    TENANT_TABLES,
    SeedReport,
    row_counts,
    seed_keyring,
)
from platformdb.postgres import connect
from platformdb.redaction import redact
from platformdb.resources import data_dir
from platformdb.types import Endpoints

CLICKHOUSE_TABLES = ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
                     "user_events", "api_logs", "user_events_daily", "api_logs_hourly")
REDIS_PATTERNS = ("session:*", "cache:*", "cachetag:*", "cachelock:*", "cacheidx:*",
                  "ratelimit:*", "queue:*")
# Columns that hold when a row was written, not what it says, and ciphertexts
# (a fresh random data key and nonces each time): left out of checksums.
VOLATILE = {"created_at", "updated_at", "last_login_at", "started_at", "finished_at",
            "scheduled_at", "sent_at", "read_at", "expires_at", "credentials_encrypted"}
def seed_test(target: Context | Endpoints) -> SeedReport:
    """The spec's test dataset, from postgresql/seed/test_data.sql (idempotent)."""
    url = context(target).url("postgresql")
    script = (data_dir("postgresql") / "seed" / "test_data.sql").read_text(encoding="utf-8")
    statements = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))
    with when_interrupted("nothing was seeded (the script runs as one transaction)"), \
            connect(url, autocommit=True) as conn:
        conn.execute(statements.encode())
        counts = row_counts(conn)
    return SeedReport("test", counts)


def looks_like_development(ctx: Context) -> bool:
    """The embedded stack, or a loopback server whose database name says dev/test/demo."""
    return "postgresql" in ctx.endpoints.embedded or development_url(ctx.url("postgresql"))


def clear(target: Context | Endpoints, *, force: bool = False) -> SeedReport:
    """Remove seeded rows from every store; schema and reference data stay."""
    ctx = context(target)
    url = ctx.url("postgresql")
    if not force and not looks_like_development(ctx):
        raise ValidationError(
            f"{redact(url)} does not look like a development database (loopback host and "
            f"a name with {'/'.join(DEV_WORDS[:3])}...)",
            hint=Hint(flag="--force", does="to clear it anyway"))
    report = SeedReport("clear")
    with when_interrupted("the stores may be partly cleared (PostgreSQL first, then ClickHouse"
                          ", then Redis): run `platformdb seed clear` again"):
        with connect(url) as conn:
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in TENANT_TABLES)))
            conn.commit()
            report.counts = row_counts(conn)
        report.notes.append(_clear_clickhouse(ctx.url("clickhouse")))
        report.notes.append(_clear_redis(ctx.url("redis")))
    return report


def _clear_clickhouse(url: str) -> str:
    from platformdb import clickhouse

    with clickhouse.connect(url) as client:
        present = {name for (name,) in clickhouse.rows(
            client, "SELECT name FROM system.tables WHERE database = currentDatabase()")}
        for table in CLICKHOUSE_TABLES:
            if table in present:
                client.command(f"TRUNCATE TABLE {clickhouse.quote_identifier(table)}")
    return f"clickhouse: truncated {len(present & set(CLICKHOUSE_TABLES))} tables"


def _clear_redis(url: str) -> str:
    from platformdb.redis.client import connect as redis_connect

    client = redis_connect(url)
    removed = 0
    try:
        for pattern in REDIS_PATTERNS:
            batch: list[Any] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += _unlink(client, batch)
                    batch = []
            if batch:
                removed += _unlink(client, batch)
    finally:
        client.close()
    return f"redis: removed {removed} keys"


def _unlink(client: Any, keys: list[Any]) -> int:
    # one key per call: on Redis Cluster the keys may live in different slots
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())


def checksums(url: str) -> dict[str, str]:
    """A digest of each tenant table's content, leaving out write-time columns."""
    digests: dict[str, str] = {}
    with connect(url) as conn:
        for table in TENANT_TABLES:
            if table in ("audit_logs", "etl_jobs"):  # records of runs, not the data itself
                continue
            columns = [name for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
                if name not in VOLATILE]
            # Order by every column: a partial order lets equal keys come back in
            # whatever order the scan (parallel, partition append) produced.
            rows = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                sql.Identifier(table),
                sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(columns))))).fetchall()
            digests[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


from platformdb.ops.seed.demo import seed_demo  # noqa: E402
from platformdb.ops.seed.load import seed_load  # noqa: E402

__all__ = [
    "DEV_SECRET_KEYS",
    "SeedReport",
    "checksums",
    "clear",
    "seed_demo",
    "seed_keyring",
    "seed_load",
    "seed_test",
]

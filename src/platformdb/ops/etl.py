"""``etl sync-daily``: ClickHouse daily totals into PostgreSQL ``campaign_metrics``.

For each day of the range, the rows of ``campaign_metrics`` are made equal to
ClickHouse's ``campaign_metrics_daily`` totals (re-aggregated with ``sum()``,
so unmerged parts do not matter): new rows are inserted, changed ones updated
(late data corrects them), rows ClickHouse no longer has are deleted.
Re-running a day therefore gives the same rows. The whole range is one
PostgreSQL transaction, under a transaction-level advisory lock: two runs at
once queue instead of double counting, and a failure leaves PostgreSQL as it
was.

Every row read from ClickHouse is accounted for, exactly once:
``read = inserted + updated + unchanged + skipped_unknown_campaigns +
skipped_too_large``. ``deleted`` counts PostgreSQL rows of the range that
ClickHouse no longer has. A total PostgreSQL's columns cannot hold is
skipped and listed, not allowed to fail the whole range (since migration 008
spend and revenue are ``numeric(38,2)``, as wide as ClickHouse's rollups, so
this only happens on a database that has not run it).

Each run records one ``etl_jobs`` row per organization it touched
(``job_type = 'sync_daily'``, the range in ``params``, counts in
``rows_processed`` / ``result``), written by the ETL role
(``platform_etl``) whose policies allow exactly this cross-tenant work. A run
that fails records ``failed`` rows with the error, after rolling back.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from platformdb import clickhouse
from platformdb.clickhouse import rows as query_rows
from platformdb.errors import ValidationError, when_interrupted
from platformdb.ops.context import Context, context
from platformdb.postgres import connect
from platformdb.types import Endpoints

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

LOCK_KEY = 0x5D1A_7C3E_0B99_4F21  # pg_advisory_xact_lock key of sync-daily
JOB_TYPE = "sync_daily"
MAX_DAYS = 3660
BIGINT_MAX = 2**63 - 1

READ = """
SELECT org_id, campaign_id, date, dsp_type, sum(impressions), sum(clicks), sum(conversions),
       toDecimal128(sum(spend), 2), toDecimal128(sum(revenue), 2)
  FROM campaign_metrics_daily
 WHERE date BETWEEN {start:Date} AND {end:Date}
 GROUP BY org_id, campaign_id, date, dsp_type
"""
# Unbounded types: whatever ClickHouse summed arrives here, then is checked against the table.
STAGE = """
CREATE TEMP TABLE sync_daily_stage (
    org_id uuid, campaign_id uuid, metric_date date, dsp_type text,
    impressions numeric, clicks numeric, conversions numeric, spend numeric, revenue numeric,
    state text
) ON COMMIT DROP
"""
CAPACITY = """
SELECT column_name, data_type, numeric_precision, numeric_scale
  FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = 'campaign_metrics'
   AND column_name IN ('impressions', 'clicks', 'conversions', 'spend', 'revenue')
"""
MARK_UNKNOWN = """
UPDATE sync_daily_stage s SET state = 'unknown'
 WHERE NOT EXISTS (SELECT FROM campaigns c WHERE c.org_id = s.org_id AND c.id = s.campaign_id)
"""
NEW_ROWS = """
SELECT count(*) FROM sync_daily_stage s
 WHERE s.state IS NULL
   AND NOT EXISTS (SELECT FROM campaign_metrics m
                    WHERE m.org_id = s.org_id AND m.campaign_id = s.campaign_id
                      AND m.metric_date = s.metric_date AND m.dsp_type = s.dsp_type)
"""
UPSERT = """
INSERT INTO campaign_metrics AS m (org_id, campaign_id, metric_date, dsp_type, impressions,
                                   clicks, conversions, spend, revenue)
SELECT s.org_id, s.campaign_id, s.metric_date, s.dsp_type, s.impressions, s.clicks,
       s.conversions, s.spend, s.revenue
  FROM sync_daily_stage s
 WHERE s.state IS NULL
ON CONFLICT (org_id, campaign_id, metric_date, dsp_type) DO UPDATE
   SET impressions = EXCLUDED.impressions, clicks = EXCLUDED.clicks,
       conversions = EXCLUDED.conversions, spend = EXCLUDED.spend, revenue = EXCLUDED.revenue
 WHERE (m.impressions, m.clicks, m.conversions, m.spend, m.revenue)
       IS DISTINCT FROM (EXCLUDED.impressions, EXCLUDED.clicks, EXCLUDED.conversions,
                         EXCLUDED.spend, EXCLUDED.revenue)
"""
DELETE_GONE = """
DELETE FROM campaign_metrics m
 WHERE m.metric_date BETWEEN %s AND %s
   AND NOT EXISTS (SELECT FROM sync_daily_stage s
                    WHERE s.org_id = m.org_id AND s.campaign_id = m.campaign_id
                      AND s.metric_date = m.metric_date AND s.dsp_type = m.dsp_type)
"""


@dataclass
class SyncReport:
    start: dt.date
    end: dt.date
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_unknown_campaigns: int = 0
    skipped_too_large: int = 0
    deleted: int = 0
    orgs: int = 0
    duration_ms: int = 0
    jobs: list[uuid.UUID] = field(default_factory=list)
    too_large: list[tuple[uuid.UUID, uuid.UUID, dt.date, str]] = field(default_factory=list)
    """(org, campaign, day, dsp) of totals PostgreSQL's columns cannot hold (first 20)."""

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    @property
    def skipped(self) -> int:
        return self.skipped_unknown_campaigns + self.skipped_too_large

    def accounted(self) -> bool:
        """Every row read landed in exactly one bucket."""
        return self.read == self.written + self.unchanged + self.skipped


def sync_daily(client: Client, postgres_url: str, start: dt.date,
               end: dt.date | None = None, *, role: str | None = "platform_etl") -> SyncReport:
    """Make PostgreSQL's daily metrics for ``start``..``end`` equal ClickHouse's."""
    end = end or start
    if end < start:
        raise ValidationError(f"--to {end} is before --from {start}")
    if (end - start).days >= MAX_DAYS:
        raise ValidationError(f"a sync covers at most {MAX_DAYS} days")
    started = time.monotonic()
    report = SyncReport(start, end)
    rows = query_rows(client, READ, {"start": start.isoformat(), "end": end.isoformat()})
    report.read = len(rows)
    per_org: dict[uuid.UUID, int] = {}
    for row in rows:
        per_org[row[0]] = per_org.get(row[0], 0) + 1
    with connect(postgres_url) as conn:
        try:
            _apply(conn, rows, report, role)
            report.duration_ms = int((time.monotonic() - started) * 1000)
            report.jobs = _record(conn, per_org, report, role, error=None)
            conn.commit()
        except Exception as exc:
            conn.rollback()
            report.duration_ms = int((time.monotonic() - started) * 1000)
            _record(conn, per_org, report, role, error=str(exc).splitlines()[0][:1000])
            conn.commit()
            raise
    return report


def _apply(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], report: SyncReport,
           role: str | None) -> None:
    if role:
        conn.execute(psycopg.sql.SQL("SET LOCAL ROLE {}").format(psycopg.sql.Identifier(role)))
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    conn.execute(STAGE)
    with conn.cursor().copy(
            "COPY sync_daily_stage (org_id, campaign_id, metric_date, dsp_type, impressions,"
            " clicks, conversions, spend, revenue) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    report.skipped_unknown_campaigns = conn.execute(MARK_UNKNOWN).rowcount
    _mark_too_large(conn, report)
    new = conn.execute(NEW_ROWS).fetchone()
    written = conn.execute(UPSERT).rowcount
    report.inserted = int(new[0]) if new else 0
    report.updated = written - report.inserted
    report.unchanged = (report.read - report.skipped_unknown_campaigns
                        - report.skipped_too_large - written)
    report.deleted = conn.execute(DELETE_GONE, (report.start, report.end)).rowcount


def _mark_too_large(conn: psycopg.Connection[Any], report: SyncReport) -> None:
    """Skip totals the target columns cannot hold, instead of failing the whole range."""
    limits: dict[str, Decimal] = {}
    for column, kind, precision, scale in conn.execute(CAPACITY).fetchall():
        if kind == "bigint":
            limits[column] = Decimal(BIGINT_MAX)
        elif kind == "numeric" and precision is not None:
            limits[column] = Decimal(10) ** (int(precision) - int(scale or 0)) - (
                Decimal(1).scaleb(-int(scale or 0)))
    if not limits:
        return
    over = psycopg.sql.SQL(" OR ").join(
        psycopg.sql.SQL("{} > %s").format(psycopg.sql.Identifier(c)) for c in limits)
    result = conn.execute(
        psycopg.sql.SQL("UPDATE sync_daily_stage SET state = 'too_large' WHERE state IS NULL"
                        " AND ({}) RETURNING org_id, campaign_id, metric_date, dsp_type")
        .format(over), list(limits.values()))
    found = result.fetchall()
    report.skipped_too_large = len(found)
    report.too_large = sorted(found)[:20]


def _record(conn: psycopg.Connection[Any], per_org: dict[uuid.UUID, int], report: SyncReport,
            role: str | None, error: str | None) -> list[uuid.UUID]:
    """One etl_jobs row per organization of the run, walked through its states."""
    if role:
        conn.execute(psycopg.sql.SQL("SET LOCAL ROLE {}").format(psycopg.sql.Identifier(role)))
    orgs = [org for (org,) in conn.execute(
        "SELECT id FROM organizations WHERE id = ANY(%s)", (list(per_org),)).fetchall()]
    report.orgs = len(orgs)
    jobs: list[uuid.UUID] = []
    params = Jsonb({"from": report.start.isoformat(), "to": report.end.isoformat()})
    for org in orgs:
        job = uuid.uuid4()
        conn.execute("INSERT INTO etl_jobs (org_id, id, job_type, params, max_attempts)"
                     " VALUES (%s, %s, %s, %s, 1)", (org, job, JOB_TYPE, params))
        conn.execute("UPDATE etl_jobs SET status = 'running' WHERE org_id = %s AND id = %s",
                     (org, job))
        result = Jsonb({"rows_read": per_org[org], "duration_ms": report.duration_ms,
                        "read_total": report.read, "inserted_total": report.inserted,
                        "updated_total": report.updated, "unchanged_total": report.unchanged,
                        "written_total": report.written, "deleted_total": report.deleted,
                        "skipped_unknown_campaigns_total": report.skipped_unknown_campaigns,
                        "skipped_too_large_total": report.skipped_too_large})
        conn.execute(
            "UPDATE etl_jobs SET status = %s, rows_processed = %s, result = %s, error = %s"
            " WHERE org_id = %s AND id = %s",
            ("failed" if error else "succeeded", 0 if error else per_org[org], result, error,
             org, job))
        jobs.append(job)
    return jobs


def sync(target: Context | Endpoints, first: dt.date, last: dt.date) -> SyncReport:
    """``platformdb etl sync-daily``: :func:`sync_daily` between the context's ClickHouse and
    PostgreSQL."""
    ctx = context(target)
    with when_interrupted("nothing was synced (the PostgreSQL transaction was rolled back); "
                          "the sync is idempotent: run it again"), \
            ctx.progress.task(f"etl sync-daily {first}..{last}"), \
            clickhouse.connect(ctx.url("clickhouse")) as client:
        return sync_daily(client, ctx.url("postgresql"), first, last)

"""``etl sync-daily``: ClickHouse daily totals into PostgreSQL ``campaign_metrics``.

For each day of the range, the rows of ``campaign_metrics`` are made equal to
ClickHouse's ``campaign_metrics_daily`` totals (summed, so unmerged parts do
not matter): new rows are inserted, changed ones updated (late data corrects
them), rows ClickHouse no longer has are deleted. Re-running a day therefore
gives the same rows. The whole range is one PostgreSQL transaction, under a
transaction-level advisory lock: two runs at once queue instead of double
counting, and a failure leaves PostgreSQL as it was.

Each run records one ``etl_jobs`` row per organization it touched
(``job_type = 'sync_daily'``, the range in ``params``, counts in
``rows_processed`` / ``result``), written by the ETL role
(``platform_etl``) whose policies allow exactly this cross-tenant work. A run
that fails records ``failed`` rows with the error, after rolling back.
Totals for campaigns PostgreSQL does not know are skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from platformdb.clickhouse import ClickHouse
from platformdb.errors import ValidationError
from platformdb.postgres import connect

LOCK_KEY = 0x5D1A_7C3E_0B99_4F21  # pg_advisory_xact_lock key of sync-daily
JOB_TYPE = "sync_daily"
MAX_DAYS = 3660

STAGE = """
CREATE TEMP TABLE sync_daily_stage (
    org_id uuid, campaign_id uuid, metric_date date, dsp_type text,
    impressions bigint, clicks bigint, conversions bigint, spend numeric(15,2),
    revenue numeric(15,2)
) ON COMMIT DROP
"""
UPSERT = """
INSERT INTO campaign_metrics AS m (org_id, campaign_id, metric_date, dsp_type, impressions,
                                   clicks, conversions, spend, revenue)
SELECT s.org_id, s.campaign_id, s.metric_date, s.dsp_type, s.impressions, s.clicks,
       s.conversions, s.spend, s.revenue
  FROM sync_daily_stage s
  JOIN campaigns c ON c.org_id = s.org_id AND c.id = s.campaign_id
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
    written: int = 0
    deleted: int = 0
    skipped_unknown_campaigns: int = 0
    orgs: int = 0
    duration_ms: int = 0
    jobs: list[uuid.UUID] = field(default_factory=list)


def sync_daily(client: ClickHouse, postgres_url: str, start: dt.date,
               end: dt.date | None = None, *, role: str | None = "platform_etl") -> SyncReport:
    """Make PostgreSQL's daily metrics for ``start``..``end`` equal ClickHouse's."""
    end = end or start
    if end < start:
        raise ValidationError(f"--to {end} is before --from {start}")
    if (end - start).days >= MAX_DAYS:
        raise ValidationError(f"a sync covers at most {MAX_DAYS} days")
    started = time.monotonic()
    report = SyncReport(start, end)
    rows = client.rows(
        "SELECT org_id, campaign_id, date, dsp_type, sum(impressions), sum(clicks),"
        " sum(conversions), toDecimal128(sum(spend), 2), toDecimal128(sum(revenue), 2)"
        " FROM campaign_metrics_daily WHERE date BETWEEN {start:Date} AND {end:Date}"
        " GROUP BY org_id, campaign_id, date, dsp_type",
        {"start": start.isoformat(), "end": end.isoformat()})
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
    with conn.cursor().copy("COPY sync_daily_stage FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    known = conn.execute(
        "SELECT count(*) FROM sync_daily_stage s JOIN campaigns c"
        " ON c.org_id = s.org_id AND c.id = s.campaign_id").fetchone()
    report.skipped_unknown_campaigns = len(rows) - (known[0] if known else 0)
    report.written = conn.execute(UPSERT).rowcount
    report.deleted = conn.execute(DELETE_GONE, (report.start, report.end)).rowcount


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
                        "written_total": report.written, "deleted_total": report.deleted,
                        "skipped_unknown_campaigns_total": report.skipped_unknown_campaigns})
        conn.execute(
            "UPDATE etl_jobs SET status = %s, rows_processed = %s, result = %s, error = %s"
            " WHERE org_id = %s AND id = %s",
            ("failed" if error else "succeeded", 0 if error else per_org[org], result, error,
             org, job))
        jobs.append(job)
    return jobs

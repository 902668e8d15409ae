"""Partition maintenance and retention, safe to run from cron.

``ensure`` creates the monthly partitions of the date-partitioned tables
ahead of time (rows never fail for lack of a partition anyway: they land in
the default partition, and ``ensure`` moves them out when their month is
created). ``apply_retention`` drops whole months past their retention window
and deletes auth tokens long expired or revoked. Both are idempotent.

Maintenance runs as the owner. Row-level security is forced on the tables
and their partitions, so the token purge, which deletes rows of every
tenant, needs an owner that bypasses it (superuser or ``BYPASSRLS``) and
refuses to run otherwise rather than delete nothing; the partition functions
lift ``FORCE`` on the default partition for their own transaction and work
for a plain owner too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from platformdb.errors import ConfigError, ValidationError
from platformdb.postgres import connect

DATE_PARTITIONED = ("campaign_metrics", "audit_logs")
DEFAULT_RETENTION_DAYS = {
    "campaign_metrics": 760,  # two years of daily metrics, plus a month of slack
    "audit_logs": 400,  # thirteen months of audit trail
    "auth_tokens": 30,  # tokens expired or revoked more than 30 days ago
}
TOKEN_BATCH = 10_000


@dataclass
class RetentionReport:
    dropped_partitions: dict[str, list[str]] = field(default_factory=dict)
    deleted_tokens: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def ensure(url: str, months_ahead: int = 3, today: date | None = None) -> dict[str, int]:
    """Create this month's partitions and ``months_ahead`` more; return counts created."""
    if months_ahead < 0 or months_ahead > 120:
        raise ValidationError("months ahead must be between 0 and 120")
    start = month_start(today or date.today())
    created: dict[str, int] = {}
    with connect(url) as conn:
        for table in DATE_PARTITIONED:
            row = conn.execute("SELECT ensure_date_partitions(%s, %s, %s)",
                               (table, start, months_ahead + 1)).fetchone()
            created[table] = int(row[0]) if row and row[0] is not None else 0
    return created


def retention_cutoff(days: int, today: date) -> date:
    """The first month to keep: partitions entirely before it are dropped."""
    return month_start(date.fromordinal(today.toordinal() - days))


def apply_retention(url: str, retention_days: dict[str, int] | None = None,
                    today: date | None = None, dry_run: bool = False) -> RetentionReport:
    """Drop date partitions past retention and purge old tokens."""
    policy = {**DEFAULT_RETENTION_DAYS, **(retention_days or {})}
    for name, days in policy.items():
        if name not in DEFAULT_RETENTION_DAYS:
            raise ValidationError(f"no retention rule for {name!r}")
        if days < 1:
            raise ValidationError(f"retention for {name} must be at least 1 day, got {days}")
    now = today or date.today()
    report = RetentionReport()
    with connect(url) as conn:
        hidden = conn.execute("SELECT row_security_active('public.auth_tokens')").fetchone()
        conn.rollback()
        if not dry_run and hidden is not None and hidden[0]:
            raise ConfigError("retention apply purges every tenant's dead tokens: run it as a "
                              "role that bypasses row-level security (superuser or BYPASSRLS)")
        for table in DATE_PARTITIONED:
            cutoff = retention_cutoff(policy[table], now)
            report.cutoffs[table] = cutoff.isoformat()
            rows = conn.execute("SELECT drop_date_partitions_before(%s, %s, %s)",
                                (table, cutoff, dry_run)).fetchall()
            names = [str(value) for (value,) in rows]
            report.dropped_partitions[table] = names
            conn.commit()
        token_days = policy["auth_tokens"]
        report.cutoffs["auth_tokens"] = f"now() - {token_days} days"
        if not dry_run:
            while True:
                cur = conn.execute(
                    "DELETE FROM auth_tokens WHERE (org_id, id) IN ("
                    " SELECT org_id, id FROM auth_tokens"
                    " WHERE expires_at < now() - make_interval(days => %s)"
                    "    OR revoked_at < now() - make_interval(days => %s) LIMIT %s)",
                    (token_days, token_days, TOKEN_BATCH))
                conn.commit()
                report.deleted_tokens += cur.rowcount
                if cur.rowcount < TOKEN_BATCH:
                    break
    return report

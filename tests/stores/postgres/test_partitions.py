"""Partition routing, pruning, maintenance and retention on the migrated schema."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import psycopg
import pytest

from platformdb.errors import ValidationError
from platformdb.stores.postgres import partitions

ORG = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-0000000000cc")


def seed(conn: psycopg.Connection[Any], days: list[date]) -> None:
    conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'P', 'p')", (ORG,))
    conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES (%s, %s, 'C')", (ORG, CAMPAIGN))
    with conn.cursor().copy("COPY campaign_metrics (org_id, campaign_id, metric_date, dsp_type,"
                            " impressions) FROM STDIN") as copy:
        for day in days:
            copy.write_row((ORG, CAMPAIGN, day, "dv360", 1))


def scanned_relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= scanned_relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= scanned_relations(value)
    return found


def test_org_and_date_range_queries_touch_one_partition(migrated_url: str) -> None:
    today = date.today().replace(day=1)
    with psycopg.connect(migrated_url) as conn:
        seed(conn, [today, partitions.add_months(today, 1), partitions.add_months(today, -1)])
        rows = conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT sum(impressions) FROM campaign_metrics"
            " WHERE org_id = %s AND metric_date >= %s AND metric_date < %s",
            (ORG, today, partitions.add_months(today, 1))).fetchone()
        assert rows is not None
        plan = rows[0] if not isinstance(rows[0], str) else json.loads(rows[0])
        scanned = scanned_relations(plan)
        assert len(scanned) == 1, scanned
        (leaf,) = scanned
        assert leaf.startswith(f"campaign_metrics_y{today:%Y}m{today:%m}_h")
        routed = conn.execute(
            "SELECT tableoid::regclass::text FROM campaign_metrics WHERE metric_date = %s",
            (today,)).fetchone()
        assert routed == (f"partitions.{leaf}",)


def test_a_date_far_in_the_future_lands_in_the_default_then_moves(migrated_url: str) -> None:
    far = date(2111, 7, 4)
    with psycopg.connect(migrated_url) as conn:
        seed(conn, [far])
        where = conn.execute("SELECT tableoid::regclass::text FROM campaign_metrics").fetchone()
        assert where == ("partitions.campaign_metrics_default",)
        conn.commit()
    created = partitions.ensure(migrated_url, months_ahead=0, today=far)
    assert created == {"campaign_metrics": 1, "audit_logs": 1}
    assert partitions.ensure(migrated_url, months_ahead=0, today=far) == {
        "campaign_metrics": 0, "audit_logs": 0}
    with psycopg.connect(migrated_url) as conn:
        where = conn.execute("SELECT tableoid::regclass::text FROM campaign_metrics").fetchone()
        assert where is not None and where[0].startswith("partitions.campaign_metrics_y2111m07_h")


def test_retention_drops_whole_months_and_dry_run_changes_nothing(migrated_url: str) -> None:
    today = date.today()
    old = partitions.add_months(today.replace(day=1), -30)
    partitions.ensure(migrated_url, months_ahead=0, today=old)
    with psycopg.connect(migrated_url) as conn:
        seed(conn, [old, today])
    dry = partitions.apply_retention(migrated_url, {"campaign_metrics": 400}, dry_run=True)
    name = f"campaign_metrics_y{old:%Y}m{old:%m}"
    assert name in dry.dropped_partitions["campaign_metrics"]
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM campaign_metrics").fetchone() == (2,)
    report = partitions.apply_retention(migrated_url, {"campaign_metrics": 400})
    assert name in report.dropped_partitions["campaign_metrics"]
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT metric_date FROM campaign_metrics").fetchall() == [(today,)]
        assert conn.execute("SELECT to_regclass(%s)", (f"partitions.{name}",)).fetchone() == (None,)


def test_retention_refuses_nonsense(migrated_url: str) -> None:
    with pytest.raises(ValidationError, match="at least 1 day"):
        partitions.apply_retention(migrated_url, {"audit_logs": 0})
    with pytest.raises(ValidationError, match="no retention rule"):
        partitions.apply_retention(migrated_url, {"users": 10})


def test_retention_refuses_a_role_that_row_level_security_would_blind(migrated_url: str) -> None:
    from platformdb.errors import ConfigError

    scoped = f"{migrated_url}?options=-c%20role%3Dplatform_app"  # a session acting as the app
    with pytest.raises(ConfigError, match="bypasses row-level security"):
        partitions.apply_retention(scoped)

"""Raw -> hourly -> daily: rollups equal the raw sums, merged or not; reports and writer."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platformdb.clickhouse import reports
from platformdb.clickhouse.writer import MetricsWriter
from platformdb.errors import ValidationError
from tests.clickhouse.conftest import table_rows

ORGS = [uuid.UUID(int=0xA1), uuid.UUID(int=0xB2)]
CAMPAIGNS = [uuid.UUID(int=0xC1), uuid.UUID(int=0xC2), uuid.UUID(int=0xC3)]
# Recent enough for the raw table's 90-day TTL (expired rows are dropped on insert).
TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY - dt.timedelta(days=3) + dt.timedelta(hours=20)  # spans two day boundaries

raw_rows = st.lists(st.fixed_dictionaries({
    "timestamp": st.integers(0, 36 * 3600 - 1).map(lambda s: START + dt.timedelta(seconds=s)),
    "org_id": st.sampled_from(ORGS),
    "campaign_id": st.sampled_from(CAMPAIGNS),
    "dsp_type": st.sampled_from(["dv360", "the_trade_desk"]),
    "impressions": st.integers(0, 10**9),
    "clicks": st.integers(0, 10**6),
    "conversions": st.integers(0, 10**4),
    "spend": st.integers(0, 10**9).map(lambda c: Decimal(c) / 100),
    "revenue": st.integers(0, 10**9).map(lambda c: Decimal(c) / 100),
}), min_size=1, max_size=300)

KEY = "org_id, campaign_id, dsp_type"
SUMS = "sum(impressions), sum(clicks), sum(conversions), sum(spend), sum(revenue)"


def grouped(client: Client, table: str, period: str) -> set[tuple[Any, ...]]:
    return set(table_rows(
        client, f"SELECT {period} AS p, {KEY}, {SUMS} FROM {table} GROUP BY p, {KEY}"))


def rollups_match_raw(client: Client) -> None:
    assert grouped(client, "campaign_metrics_hourly", "hour") == grouped(
        client, "campaign_metrics_raw", "toStartOfHour(timestamp)")
    assert grouped(client, "campaign_metrics_daily", "date") == grouped(
        client, "campaign_metrics_raw", "toDate(timestamp)")


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(raw_rows, min_size=1, max_size=3))
@pytest.mark.slow
def test_hourly_and_daily_sums_equal_raw_sums_before_and_after_merges(
        ch: Client, batches: list[list[dict[str, Any]]]) -> None:
    for table in ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily"):
        ch.command(f"TRUNCATE TABLE {table}")
    writer = MetricsWriter(ch, known_orgs=ORGS, batch_size=128)
    for batch in batches:  # several inserts: several unmerged parts per rollup
        writer.write_raw(batch)
    rollups_match_raw(ch)
    for table in ("campaign_metrics_hourly", "campaign_metrics_daily"):
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
    rollups_match_raw(ch)


def row(org: uuid.UUID, campaign: uuid.UUID, when: dt.datetime, spend: str,
        **counts: int) -> dict[str, Any]:
    return {"timestamp": when, "org_id": org, "campaign_id": campaign, "dsp_type": "dv360",
            "impressions": counts.get("impressions", 1000), "clicks": counts.get("clicks", 10),
            "conversions": counts.get("conversions", 1), "spend": Decimal(spend),
            "revenue": Decimal(spend) * 3}


@pytest.mark.slow
def test_reports_read_the_rollups_for_one_org_only(ch: Client) -> None:
    writer = MetricsWriter(ch, known_orgs=ORGS)
    day = TODAY - dt.timedelta(days=1, hours=-9)
    writer.write_raw([row(ORGS[0], CAMPAIGNS[0], day, "10.00"),
                      row(ORGS[0], CAMPAIGNS[0], day + dt.timedelta(hours=1), "5.50"),
                      row(ORGS[0], CAMPAIGNS[1], day, "1.25", clicks=0)])
    writer.write_raw([row(ORGS[1], CAMPAIGNS[2], day, "999.99")])
    daily = reports.campaign_totals(ch, ORGS[0], day.date(), day.date())
    assert {(t.campaign_id, t.spend) for t in daily} == {(CAMPAIGNS[0], Decimal("15.50")),
                                                          (CAMPAIGNS[1], Decimal("1.25"))}
    hourly = reports.campaign_totals(ch, ORGS[0], day.date(), day.date(), grain="hour",
                                     campaign_id=CAMPAIGNS[0])
    assert [t.spend for t in hourly] == [Decimal("10.00"), Decimal("5.50")]
    (total,) = reports.org_totals(ch, ORGS[0], day.date(), day.date())
    assert total.spend == Decimal("16.75") and total.impressions == 3000
    assert total.ctr == pytest.approx(20 / 3000)
    assert total.cpm == Decimal("5.5833") and total.roas == Decimal("3.0000")
    top = reports.top_campaigns(ch, ORGS[0], day.date(), day.date(), by="spend", limit=1)
    assert [t.campaign_id for t in top] == [CAMPAIGNS[0]]
    low = next(t for t in daily if t.campaign_id == CAMPAIGNS[1])
    assert low.cpc is None  # no clicks: no CPC rather than a division error
    for report in (daily, hourly, top, reports.org_totals(ch, ORGS[1], day.date(), day.date())):
        assert all(t.campaign_id != CAMPAIGNS[2] for t in report if report is not None)
    (other,) = reports.org_totals(ch, ORGS[1], day.date(), day.date())
    assert other.spend == Decimal("999.99")


@pytest.mark.slow
def test_bad_rows_reject_the_whole_batch_and_name_the_row(ch: Client) -> None:
    writer = MetricsWriter(ch, known_orgs=ORGS)
    good = row(ORGS[0], CAMPAIGNS[0], TODAY, "1.00")
    cases = [
        ({**good, "org_id": uuid.UUID(int=0xDEAD)}, r"row 1: unknown org_id"),
        ({**good, "clicks": -1}, r"row 1: clicks must be a non-negative integer"),
        ({**good, "timestamp": "yesterday"}, r"row 1: timestamp 'yesterday' is not a timestamp"),
        ({**good, "spend": Decimal("1.001")}, r"row 1: spend .* more than 2 decimals"),
        ({**good, "spend": "-3"}, r"row 1: spend must be a non-negative amount"),
    ]
    for bad, message in cases:
        with pytest.raises(ValidationError, match=message):
            writer.write_raw([good, bad])
    assert table_rows(ch, "SELECT count() FROM campaign_metrics_raw") == [(0,)]
    with pytest.raises(ValidationError, match="must not be negative"):
        writer.write_raw_columns({"timestamp": [good["timestamp"]], "org_id": [ORGS[0].bytes],
                                  "campaign_id": [CAMPAIGNS[0].bytes], "dsp_type": ["dv360"],
                                  "impressions": [-5], "clicks": [0], "conversions": [0],
                                  "spend": [Decimal("0")], "revenue": [Decimal("0")]})
    assert table_rows(ch, "SELECT count() FROM campaign_metrics_raw") == [(0,)]


@pytest.mark.slow
def test_events_and_api_logs_feed_their_pre_aggregations(ch: Client) -> None:
    writer = MetricsWriter(ch, known_orgs=ORGS)
    now = TODAY
    users = [uuid.uuid4() for _ in range(3)]
    writer.write_events([{"timestamp": now, "org_id": ORGS[0], "user_id": u, "event_type": "login",
                          "ip": "10.0.0.1"} for u in users * 2])
    writer.write_api_logs([{"timestamp": now, "org_id": ORGS[0], "method": "GET",
                            "path": "/campaigns", "status_code": code, "duration_ms": ms}
                           for code, ms in ((200, 10), (200, 30), (503, 900))])
    assert table_rows(ch, "SELECT sum(events), uniqMerge(users) FROM user_events_daily"
                   " WHERE org_id = {o:UUID}", {"o": ORGS[0]}) == [(6, 3)]
    assert table_rows(ch, "SELECT sum(requests), sum(errors) FROM api_logs_hourly") == [(3, 1)]


@pytest.mark.slow
def test_known_orgs_come_from_the_postgres_dictionary(ch: Client, pg: str) -> None:
    import psycopg

    org = uuid.uuid4()
    with psycopg.connect(pg) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug)"
                     " VALUES (%s, 'Dict Org', 'dict-org')",
                     (org,))
    ch.command("SYSTEM RELOAD DICTIONARY organizations_dict")
    writer = MetricsWriter(ch)
    assert writer.write_raw([row(org, CAMPAIGNS[0], TODAY, "2.00")]) == 1
    with pytest.raises(ValidationError, match="unknown org_id"):
        MetricsWriter(ch).write_raw([row(ORGS[0], CAMPAIGNS[0], TODAY, "2.00")])

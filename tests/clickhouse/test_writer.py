"""MetricsWriter: a write raises or is complete, retries never double count, money is exact."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platformdb.clickhouse import reports
from platformdb.clickhouse.writer import MAX_COUNT, MAX_MONEY, MetricsWriter, WriteFailed, money
from platformdb.errors import ValidationError
from tests.clickhouse.conftest import scalar, table_rows

ORG = uuid.UUID(int=0xA1)
CAMPAIGNS = [uuid.UUID(int=0xC0 + n) for n in range(8)]
HOUR = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=30)
ROLLUPS = ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily")


def metric(campaign: uuid.UUID = CAMPAIGNS[0], minute: int = 0, spend: Any = "1.25",
           **values: Any) -> dict[str, Any]:
    return {"timestamp": HOUR + dt.timedelta(minutes=minute), "org_id": ORG,
            "campaign_id": campaign, "dsp_type": "dv360", "impressions": 100, "clicks": 3,
            "conversions": 1, "spend": spend, "revenue": "2.50", **values}


def state(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup re-aggregated per key, and the raw rows."""
    sums = "sum(impressions), sum(clicks), sum(conversions), sum(spend), sum(revenue)"
    return {
        "raw": sorted(table_rows(client, f"SELECT campaign_id, timestamp, count(), {sums}"
                                         " FROM campaign_metrics_raw GROUP BY ALL")),
        "hourly": sorted(table_rows(client, f"SELECT campaign_id, hour, sum(raw_rows), {sums}"
                                            " FROM campaign_metrics_hourly GROUP BY ALL")),
        "daily": sorted(table_rows(client, f"SELECT campaign_id, date, sum(raw_rows), {sums}"
                                           " FROM campaign_metrics_daily GROUP BY ALL")),
    }


def empty(client: Client) -> None:
    for table in ROLLUPS:
        client.command(f"TRUNCATE TABLE {table}")  # also forgets the deduplication tokens


rows_strategy = st.lists(st.builds(
    metric, campaign=st.sampled_from(CAMPAIGNS[:3]), minute=st.integers(0, 180),
    spend=st.integers(0, 10**6).map(lambda c: Decimal(c) / 100),
    impressions=st.integers(0, 10**6)), min_size=1, max_size=60)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, batch=st.integers(1, 25))
@pytest.mark.slow
def test_the_same_rows_written_twice_with_their_token_count_once(
        ch: Client, rows: list[dict[str, Any]], batch: int) -> None:
    empty(ch)
    writer = MetricsWriter(ch, known_orgs=[ORG], batch_size=batch)
    assert writer.write_raw(rows, token="dv360:report-1") == len(rows)
    once = state(ch)
    assert writer.write_raw(rows, token="dv360:report-1") == len(rows)
    assert state(ch) == once
    writer.write_raw(rows, token="dv360:report-2")  # another report: counted
    assert scalar(ch, "SELECT count() FROM campaign_metrics_raw") == 2 * len(rows)


@pytest.mark.slow
def test_without_a_token_equal_batches_are_both_written(ch: Client) -> None:
    writer = MetricsWriter(ch, known_orgs=[ORG])
    writer.write_raw([metric()])
    writer.write_raw([metric()])
    assert scalar(ch, "SELECT count() FROM campaign_metrics_raw") == 2
    assert scalar(ch, "SELECT sum(raw_rows) FROM campaign_metrics_daily") == 2


@pytest.mark.slow
def test_a_check_constraint_failure_raises_with_only_the_complete_batches_counted(
        ch: Client) -> None:
    bad = CAMPAIGNS[5]
    ch.command(f"ALTER TABLE campaign_metrics_raw ADD CONSTRAINT probe CHECK campaign_id != "
               f"toUUID('{bad}')")
    rows = [metric(CAMPAIGNS[n % 3], minute=n) for n in range(7)]
    rows[4] = metric(bad, minute=4)  # in the second batch of three
    writer = MetricsWriter(ch, known_orgs=[ORG], batch_size=3)
    with pytest.raises(WriteFailed, match=r"batch 1 \(rows 3\.\.5\).*probe") as failed:
        writer.write_raw(rows, token="report-7")
    assert (failed.value.written, failed.value.batch, failed.value.token) == (3, 1, "report-7")
    assert scalar(ch, "SELECT count() FROM campaign_metrics_raw") == 3
    ch.command("ALTER TABLE campaign_metrics_raw DROP CONSTRAINT probe")
    assert writer.write_raw(rows, token=failed.value.token) == 7  # the retry completes it
    retried = state(ch)
    empty(ch)
    writer.write_raw(rows, token="report-7")
    assert retried == state(ch)


@pytest.mark.slow
def test_a_failing_view_raises_and_a_retry_completes_the_rollups_once(ch: Client) -> None:
    """ClickHouse keeps the raw part when a view fails; the token makes the retry exact."""
    rows = [metric(CAMPAIGNS[n % 4], minute=n * 7) for n in range(40)]
    writer = MetricsWriter(ch, known_orgs=[ORG])
    writer.write_raw(rows, token="expected")
    expected = state(ch)
    empty(ch)
    # the daily view's insert fails: raw and hourly are written, daily is not
    ch.command("ALTER TABLE campaign_metrics_daily ADD CONSTRAINT probe CHECK raw_rows = 0")
    with pytest.raises(WriteFailed, match="probe") as failed:
        writer.write_raw(rows)
    assert failed.value.written == 0
    partial = state(ch)
    assert partial["raw"] == expected["raw"] and partial["hourly"] == expected["hourly"]
    assert partial["daily"] == []
    ch.command("ALTER TABLE campaign_metrics_daily DROP CONSTRAINT probe")
    assert writer.write_raw(rows, token=failed.value.token) == 40
    assert state(ch) == expected
    assert writer.write_raw(rows, token=failed.value.token) == 40
    assert state(ch) == expected


@pytest.mark.slow
def test_the_largest_accepted_values_never_wrap_after_merges(ch: Client) -> None:
    writer = MetricsWriter(ch, known_orgs=[ORG], batch_size=5_000)
    top = metric(spend=MAX_MONEY, revenue=MAX_MONEY, impressions=MAX_COUNT, clicks=MAX_COUNT,
                 conversions=MAX_COUNT)
    writer.write_raw([top] * 5_000)
    writer.write_raw([{**top, "timestamp": HOUR + dt.timedelta(minutes=59)}] * 5_000)
    for table in ROLLUPS[1:]:
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
    assert table_rows(ch, "SELECT count(), min(spend), min(impressions)"
                          " FROM campaign_metrics_daily") == [(1, MAX_MONEY * 10_000,
                                                               MAX_COUNT * 10_000)]
    (hourly,) = state(ch)["hourly"]
    assert hourly[2:] == (10_000, MAX_COUNT * 10_000, MAX_COUNT * 10_000, MAX_COUNT * 10_000,
                          MAX_MONEY * 10_000, MAX_MONEY * 10_000)
    (total,) = reports.org_totals(ch, ORG, HOUR.date(), HOUR.date())
    assert total.spend == total.revenue == MAX_MONEY * 10_000 > 0


@pytest.mark.parametrize(("change", "message"), [
    ({"spend": Decimal("0.005")}, r"row 1: spend .* more than 2 decimals"),
    ({"spend": "0.005"}, r"row 1: spend .* more than 2 decimals"),
    ({"spend": None}, r"row 1: spend is missing"),
    ({"revenue": 1.1}, r"row 1: revenue 1\.1 is a float"),
    ({"spend": MAX_MONEY + Decimal("0.01")}, r"row 1: spend .* above the maximum"),
    ({"spend": Decimal("1e30")}, r"row 1: spend .* above the maximum"),
    ({"spend": "NaN"}, r"row 1: spend must be a non-negative amount"),
    ({"impressions": None}, r"row 1: impressions is missing"),
    ({"impressions": 2**64}, r"row 1: impressions .* above the maximum of 4,294,967,295"),
    ({"clicks": MAX_COUNT + 1}, r"row 1: clicks .* above the maximum"),
    ({"conversions": -1}, r"row 1: conversions must be a non-negative integer"),
    ({"impressions": True}, r"row 1: impressions must be a non-negative integer"),
])
@pytest.mark.slow
def test_values_that_cannot_be_stored_exactly_reject_the_batch(
        ch: Client, change: dict[str, Any], message: str) -> None:
    writer = MetricsWriter(ch, known_orgs=[ORG])
    with pytest.raises(ValidationError, match=message):
        writer.write_raw([metric(), {**metric(), **change}])
    assert scalar(ch, "SELECT count() FROM campaign_metrics_raw") == 0


def columns(**change: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "timestamp": pa.array([HOUR, HOUR], pa.timestamp("s", tz="UTC")),
        "org_id": [ORG.bytes, ORG.bytes], "campaign_id": [CAMPAIGNS[0].bytes] * 2,
        "dsp_type": ["dv360"] * 2, "impressions": [1, 2], "clicks": [0, 0],
        "conversions": [0, 0], "spend": [125, 250], "revenue": [0, 0]}
    return {**data, **change}


@pytest.mark.parametrize(("change", "message"), [
    ({"spend": pa.array([Decimal("0.01"), Decimal("0.005")])}, "more than 2 decimals"),
    ({"spend": [0.5, 0.25]}, "float column is not exact"),
    ({"spend": pa.array([Decimal("1"), None], pa.decimal128(10, 2))}, "row 1: spend is missing"),
    ({"spend": [1, int(MAX_MONEY * 100) + 1]}, "row 1: spend is above the maximum"),
    ({"impressions": pa.array([1, 2**64 - 1], pa.uint64())}, "row 1: impressions is above"),
    ({"clicks": [0, -5]}, "row 1: clicks must not be negative"),
    ({"timestamp": pa.array([HOUR, dt.datetime(2200, 1, 1, tzinfo=dt.UTC)],
                            pa.timestamp("s", tz="UTC"))}, "row 1: timestamp is outside"),
])
@pytest.mark.slow
def test_columns_are_validated_as_exactly_as_rows(ch: Client, change: dict[str, Any],
                                                  message: str) -> None:
    writer = MetricsWriter(ch, known_orgs=[ORG])
    with pytest.raises(ValidationError, match=message):
        writer.write_raw_columns(columns(**change))
    assert scalar(ch, "SELECT count() FROM campaign_metrics_raw") == 0
    assert writer.write_raw_columns(columns(), token="cols") == 2
    assert writer.write_raw_columns(columns(), token="cols") == 2
    assert table_rows(ch, "SELECT count(), sum(spend), min(timestamp), any(dsp_type)"
                          " FROM campaign_metrics_raw") == [
        (2, Decimal("3.75"), HOUR.replace(tzinfo=None), "dv360")]


@given(units=st.integers(0, 10**16), scale=st.integers(0, 6))
def test_money_is_accepted_exactly_when_two_decimals_hold_it(units: int, scale: int) -> None:
    amount = Decimal(units).scaleb(-scale)
    fits = amount == amount.quantize(Decimal("0.01")) and amount <= MAX_MONEY
    if fits:
        assert money(amount) == amount and money(str(amount)) == amount
    else:
        with pytest.raises(ValidationError):
            money(amount)

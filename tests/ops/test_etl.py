"""etl sync-daily: PostgreSQL's daily metrics equal Client's, idempotently."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse.writer import MAX_MONEY, MetricsWriter
from platformdb.errors import ValidationError
from platformdb.ops.etl import sync_daily
from tests.clickhouse.conftest import table_rows

TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY1, DAY2 = (TODAY - dt.timedelta(days=2)).date(), (TODAY - dt.timedelta(days=1)).date()


def seed_pg(pg: str) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    a, b = uuid.uuid4(), uuid.uuid4()
    campaigns = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(pg) as conn:
        for org, slug in ((a, "sync-a"), (b, "sync-b")):
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)",
                         (org, slug, slug))
        for org, campaign in ((a, campaigns[0]), (a, campaigns[1]), (b, campaigns[2])):
            conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES (%s, %s, 'C')",
                         (org, campaign))
    return a, b, campaigns


def raw(org: uuid.UUID, campaign: uuid.UUID, day: dt.date, hour: int, spend: str) -> dict[str, Any]:
    return {"timestamp": dt.datetime.combine(day, dt.time(hour), dt.UTC), "org_id": org,
            "campaign_id": campaign, "dsp_type": "dv360", "impressions": 1000, "clicks": 7,
            "conversions": 1, "spend": Decimal(spend), "revenue": Decimal(spend) * 2}


def pg_rows(pg: str) -> set[tuple[Any, ...]]:
    with psycopg.connect(pg) as conn:
        return set(conn.execute(
            "SELECT org_id, campaign_id, metric_date, dsp_type, impressions, clicks, conversions,"
            " spend, revenue FROM campaign_metrics").fetchall())


def ch_rows(ch: Client) -> set[tuple[Any, ...]]:
    return set(table_rows(ch,
        "SELECT org_id, campaign_id, date, dsp_type, sum(impressions), sum(clicks),"
        " sum(conversions), sum(spend), sum(revenue) FROM campaign_metrics_daily"
        " GROUP BY org_id, campaign_id, date, dsp_type"))


@pytest.mark.slow
def test_sync_matches_clickhouse_to_the_cent_and_is_idempotent(ch: Client, pg: str) -> None:
    a, b, campaigns = seed_pg(pg)
    writer = MetricsWriter(ch, known_orgs=[a, b])
    writer.write_raw([raw(a, campaigns[0], DAY1, h, "0.01") for h in range(24)])
    writer.write_raw([raw(a, campaigns[1], DAY2, 3, "12.34"), raw(b, campaigns[2], DAY2, 4, "0.99"),
                      raw(b, campaigns[2], DAY2, 5, "100.00")])
    first = sync_daily(ch, pg, DAY1, DAY2)
    assert pg_rows(pg) == ch_rows(ch)
    assert first.written == 3 and first.orgs == 2
    assert (Decimal("0.24") in {r[7] for r in pg_rows(pg)})
    again = sync_daily(ch, pg, DAY1, DAY2)
    assert again.written == 0 and again.deleted == 0
    assert pg_rows(pg) == ch_rows(ch)
    # late data for day 2 corrects the PostgreSQL row
    writer.write_raw([raw(b, campaigns[2], DAY2, 23, "0.02")])
    sync_daily(ch, pg, DAY2)
    assert pg_rows(pg) == ch_rows(ch)
    with psycopg.connect(pg) as conn:
        jobs = conn.execute("SELECT org_id, status, rows_processed FROM etl_jobs"
                            " WHERE job_type = 'sync_daily' ORDER BY created_at").fetchall()
    assert len(jobs) == 6 and {j[1] for j in jobs} == {"succeeded"}  # 2 orgs x 3 runs
    assert (a, "succeeded", 2) in jobs


@pytest.mark.slow
def test_two_syncs_at_once_do_not_double_count(ch: Client, pg: str) -> None:
    a, b, campaigns = seed_pg(pg)
    MetricsWriter(ch, known_orgs=[a, b]).write_raw(
        [raw(a, campaigns[0], DAY1, h, "1.50") for h in range(5)])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sync_daily(ch, pg, DAY1)  # clickhouse-connect serialises calls on one client
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pg_rows(pg) == ch_rows(ch)
    assert {r[7] for r in pg_rows(pg)} == {Decimal("7.50")}


@pytest.mark.slow
def test_rows_of_unknown_campaigns_are_skipped_and_bad_ranges_refused(ch: Client, pg: str) -> None:
    a, _b, campaigns = seed_pg(pg)
    MetricsWriter(ch, known_orgs=[a]).write_raw([raw(a, uuid.uuid4(), DAY1, 1, "1.00"),
                                                 raw(a, campaigns[0], DAY1, 1, "2.00")])
    report = sync_daily(ch, pg, DAY1)
    assert report.skipped_unknown_campaigns == 1 and report.written == 1
    with pytest.raises(ValidationError, match="before"):
        sync_daily(ch, pg, DAY2, DAY1)


@pytest.mark.slow
def test_dictionaries_return_postgres_names_and_refresh(ch: Client, pg: str) -> None:
    from platformdb.clickhouse.reports import campaign_names

    a, b, campaigns = seed_pg(pg)
    ch.command("SYSTEM RELOAD DICTIONARY campaigns_dict")
    assert campaign_names(ch, a, campaigns) == {campaigns[0]: "C", campaigns[1]: "C"}
    with psycopg.connect(pg) as conn:
        conn.execute("UPDATE campaigns SET name = 'Renamed' WHERE id = %s", (campaigns[0],))
    ch.command("SYSTEM RELOAD DICTIONARY campaigns_dict")
    assert campaign_names(ch, a, [campaigns[0]]) == {campaigns[0]: "Renamed"}
    assert campaign_names(ch, b, [campaigns[0]]) == {}  # another org's campaign: no name
    org_name = table_rows(ch, "SELECT dictGet('organizations_dict', 'name', {o:UUID})", {"o": a})
    assert org_name == [("sync-a",)]


@pytest.mark.slow
def test_every_row_read_is_accounted_for(ch: Client, pg: str) -> None:
    a, b, campaigns = seed_pg(pg)
    writer = MetricsWriter(ch, known_orgs=[a, b])
    writer.write_raw([raw(a, campaigns[0], DAY1, h, "1.00") for h in range(3)]
                     + [raw(a, campaigns[1], DAY1, 2, "2.00"),
                        raw(b, campaigns[2], DAY1, 3, "3.00"),
                        raw(a, uuid.uuid4(), DAY1, 4, "4.00")])
    first = sync_daily(ch, pg, DAY1)
    assert (first.read, first.inserted, first.updated, first.unchanged,
            first.skipped_unknown_campaigns, first.deleted) == (4, 3, 0, 0, 1, 0)
    assert first.accounted()
    writer.write_raw([raw(b, campaigns[2], DAY1, 9, "0.50")])  # late data for one row
    with psycopg.connect(pg) as conn:  # a row ClickHouse does not have
        conn.execute("INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type)"
                     " VALUES (%s, %s, %s, 'ttd')", (a, campaigns[0], DAY1))
    second = sync_daily(ch, pg, DAY1)
    assert (second.read, second.inserted, second.updated, second.unchanged,
            second.skipped_unknown_campaigns, second.deleted) == (4, 0, 1, 2, 1, 1)
    assert second.accounted() and second.written == 1
    with psycopg.connect(pg) as conn:
        (result,) = conn.execute("SELECT result FROM etl_jobs WHERE org_id = %s"
                                 " ORDER BY created_at DESC LIMIT 1", (a,)).fetchone() or (None,)
    assert result["unchanged_total"] == 2 and result["read_total"] == 4


def big_day(ch: Client, a: uuid.UUID, b: uuid.UUID, campaigns: list[uuid.UUID]) -> None:
    """Two raw rows at the maximum (a campaign-day total near 2e13) and two small ones."""
    big = {**raw(a, campaigns[0], DAY1, 1, "0"), "spend": MAX_MONEY, "revenue": MAX_MONEY}
    MetricsWriter(ch, known_orgs=[a, b]).write_raw(
        [big, {**big, "timestamp": big["timestamp"] + dt.timedelta(hours=1)},
         raw(a, campaigns[1], DAY1, 2, "2.00"), raw(b, campaigns[2], DAY2, 3, "3.00")])


@pytest.mark.slow
def test_a_campaign_day_of_1e13_or_more_syncs_since_migration_008(ch: Client, pg: str) -> None:
    """Migration 008 widened campaign_metrics.spend / revenue to numeric(38,2), as wide as
    ClickHouse's rollups: the day that used to be skipped is synced to the cent."""
    a, b, campaigns = seed_pg(pg)
    big_day(ch, a, b, campaigns)
    report = sync_daily(ch, pg, DAY1, DAY2)
    assert (report.read, report.written, report.skipped_too_large) == (3, 3, 0)
    assert report.too_large == [] and report.accounted()
    assert pg_rows(pg) == ch_rows(ch)
    assert MAX_MONEY * 2 in {r[7] for r in pg_rows(pg)}
    with psycopg.connect(pg) as conn:  # the view over the widened columns answers (superuser)
        spend = conn.execute("SELECT max(spend) FROM campaign_performance").fetchone()
    assert spend == (MAX_MONEY * 2,)


@pytest.fixture
def pg_before_008(pg_template: tuple[str, str]) -> Iterator[str]:
    """A PostgreSQL database migrated up to 007 (money still numeric(15,2))."""
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.stores.postgres.driver import PostgresDriver
    from tests.conftest import create_database, drop_database, fresh_name

    admin, _ = pg_template
    name = fresh_name()
    url = create_database(admin, name)
    driver = PostgresDriver(url)
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up(target=7)
    finally:
        driver.close()
    yield url
    drop_database(admin, name)


@pytest.mark.slow
def test_a_total_postgres_cannot_hold_is_skipped_not_fatal(ch: Client, pg_before_008: str) -> None:
    """Before 008, campaign_metrics.spend is numeric(15,2): a campaign-day of 1e13 or more does
    not fit. It is skipped and named; the rest of the range is synced."""
    pg = pg_before_008
    a, b, campaigns = seed_pg(pg)
    big_day(ch, a, b, campaigns)
    report = sync_daily(ch, pg, DAY1, DAY2)
    assert (report.read, report.written, report.skipped_too_large) == (3, 2, 1)
    assert report.too_large == [(a, campaigns[0], DAY1, "dv360")]
    assert report.accounted()
    assert len(pg_rows(pg)) == 2

"""A ClickHouse backup taken while rows are inserted restores with rollups equal to the
rollup of the restored raw rows (issue 19: raw/hourly/daily were 6,200/5,800/5,600)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from platformdb.backup.manifest import MANIFEST
from platformdb.clickhouse import command, connect, rows, with_database
from platformdb.clickhouse.writer import MetricsWriter
from platformdb.migrate import Migrator
from platformdb.stores.clickhouse import backup as ch_backup
from tests.clickhouse.conftest import MIGRATIONS, driver_for

ORG = uuid.UUID(int=0xB0B)
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
HOURLY = ("SELECT hour, campaign_id, sum(impressions), sum(spend), sum(raw_rows)"
          " FROM campaign_metrics_hourly GROUP BY hour, campaign_id ORDER BY hour, campaign_id")
RAW_BY_HOUR = ("SELECT toStartOfHour(timestamp) AS hour, campaign_id, sum(impressions),"
               " sum(spend), count() FROM campaign_metrics_raw GROUP BY hour, campaign_id"
               " ORDER BY hour, campaign_id")
DAILY = ("SELECT date, campaign_id, sum(impressions), sum(spend), sum(raw_rows)"
         " FROM campaign_metrics_daily GROUP BY date, campaign_id ORDER BY date, campaign_id")
RAW_BY_DAY = ("SELECT toDate(timestamp) AS date, campaign_id, sum(impressions), sum(spend),"
              " count() FROM campaign_metrics_raw GROUP BY date, campaign_id"
              " ORDER BY date, campaign_id")


def metrics(n: int, count: int) -> list[dict[str, Any]]:
    return [{"timestamp": NOW - dt.timedelta(hours=(n + i) % 30, minutes=i % 60),
             "org_id": ORG, "campaign_id": uuid.UUID(int=(n + i) % 4),
             "dsp_type": "dv360", "impressions": 10 + i, "clicks": 1, "conversions": 0,
             "spend": Decimal("0.25"), "revenue": Decimal("0.50")} for i in range(count)]


def assert_rollups_equal_raw(client: Client) -> int:
    raw = rows(client, RAW_BY_HOUR)
    assert rows(client, HOURLY) == raw
    assert rows(client, DAILY) == rows(client, RAW_BY_DAY)
    return sum(int(r[4]) for r in raw)


def restored(folder: Path, url: str) -> str:
    target = with_database(url, f"r_{uuid.uuid4().hex[:10]}")
    ch_backup.restore(target, folder)
    return target


def drop(url: str) -> None:
    with connect(url) as client:
        command(client, f"DROP DATABASE IF EXISTS {client.database} SYNC")


@pytest.mark.slow
def test_a_backup_under_inserts_restores_rollups_equal_to_raw(
        ch_empty: Client, ch_url: str, tmp_path: Path) -> None:
    Migrator(driver_for(ch_empty, None), MIGRATIONS).up()
    MetricsWriter(ch_empty, known_orgs=[ORG]).write_raw(metrics(0, 2000))
    stop = threading.Event()
    failures: list[BaseException] = []

    def insert() -> None:
        try:
            with connect(ch_url) as client:
                writer = MetricsWriter(client, known_orgs=[ORG])
                n = 0
                while not stop.is_set():
                    n += 1
                    writer.write_raw(metrics(n, 50))
        except BaseException as exc:  # reported below
            failures.append(exc)

    thread = threading.Thread(target=insert)
    thread.start()
    folders = []
    try:
        for n in range(3):
            folders.append(ch_backup.backup(ch_url, tmp_path / str(n)))
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    targets = []
    try:
        for folder in folders:
            targets.append(restored(folder, ch_url))
            with connect(targets[-1]) as client:
                assert assert_rollups_equal_raw(client) >= 2000
    finally:
        for target in targets:
            drop(target)


@pytest.mark.slow
def test_a_rollup_bucket_its_raw_snapshot_lacks_is_rebuilt_from_raw(
        ch_empty: Client, ch_url: str, tmp_path: Path) -> None:
    """What a row in flight looks like: hourly holds it, raw's snapshot does not."""
    Migrator(driver_for(ch_empty, None), MIGRATIONS).up()
    MetricsWriter(ch_empty, known_orgs=[ORG]).write_raw(metrics(0, 200))
    old = NOW - dt.timedelta(days=200)  # past raw's TTL, not hourly's: left untouched
    for hour in (NOW - dt.timedelta(hours=2), old):
        ch_empty.insert("campaign_metrics_hourly",
                        [[hour, ORG, uuid.UUID(int=1), "dv360", 5, 0, 0, Decimal(1),
                          Decimal(2), 1]],
                        column_names=["hour", "org_id", "campaign_id", "dsp_type",
                                      "impressions", "clicks", "conversions", "spend",
                                      "revenue", "raw_rows"])
    folder = ch_backup.backup(ch_url, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["extra"]["rollups_rebuilt"] == {"campaign_metrics_hourly": 1,
                                                    "campaign_metrics_daily": 1}
    target = restored(folder, ch_url)
    try:
        with connect(target) as client:
            assert rows(client, HOURLY.replace("GROUP", "WHERE hour > {o:DateTime} GROUP"),
                        {"o": old}) == rows(client, RAW_BY_HOUR)
            assert rows(client, "SELECT sum(raw_rows) FROM campaign_metrics_hourly"
                                " WHERE hour = {o:DateTime}", {"o": old}) == [(1,)]
    finally:
        drop(target)


@pytest.mark.slow
def test_a_backup_in_steady_state_rebuilds_nothing(ch_empty: Client, ch_url: str,
                                                   tmp_path: Path) -> None:
    Migrator(driver_for(ch_empty, None), MIGRATIONS).up()
    MetricsWriter(ch_empty, known_orgs=[ORG]).write_raw(metrics(0, 100))
    folder = ch_backup.backup(ch_url, tmp_path)
    assert json.loads((folder / MANIFEST).read_text())["extra"]["rollups_rebuilt"] == {}


@pytest.mark.slow
def test_tables_loaded_in_parallel_restore_exactly(ch_empty: Client, ch_url: str,
                                                   tmp_path: Path) -> None:
    Migrator(driver_for(ch_empty, None), MIGRATIONS).up()
    MetricsWriter(ch_empty, known_orgs=[ORG]).write_raw(metrics(0, 500))
    folder = ch_backup.backup(ch_url, tmp_path)
    target = with_database(ch_url, f"r_{uuid.uuid4().hex[:10]}")
    try:
        report = ch_backup.restore(target, folder, jobs=4, verify_after=True)
        with connect(ch_url) as client:
            assert report.tables == ch_backup.states(client, str(client.database))
    finally:
        drop(target)

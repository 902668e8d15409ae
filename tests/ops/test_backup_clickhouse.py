"""ClickHouse backup and restore: round trip, refusals, views and dictionaries rebuilt."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from platformdb.backup import clickhouse as ch_backup
from platformdb.stores import restore as restore_any
from platformdb.types import Endpoints
from platformdb.clickhouse import connect
from platformdb.clickhouse.writer import MetricsWriter
from platformdb.config import Settings
from platformdb.errors import ValidationError
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.clickhouse import ClickHouseDriver, postgres_placeholders

ORG = uuid.UUID(int=0xFEED)


def settings_for(home: Path, pg: str, database: str) -> Settings:
    return Settings(home=home, postgres_url=pg,
                    clickhouse_url=f"chdb://{home / 'test-clickhouse'}?database={database}")


@pytest.fixture
def source(stack_home: Path, migrated_template: str, pg_admin_url: str) -> Settings:
    from tests.conftest import with_database

    pg = with_database(pg_admin_url, migrated_template)
    config = settings_for(stack_home, pg, f"src_{uuid.uuid4().hex[:8]}")
    with connect(config) as client:
        driver = ClickHouseDriver(client, postgres_placeholders(config.postgres_url or ""), own_client=False)
        driver.set_migrations(discover(migrations_dir("clickhouse")))
        Migrator(driver, discover(migrations_dir("clickhouse"))).up()
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        MetricsWriter(client, known_orgs=[ORG]).write_raw([
            {"timestamp": now - dt.timedelta(hours=h), "org_id": ORG, "campaign_id": uuid.UUID(int=h % 3),
             "dsp_type": "dv360", "impressions": 100 * h, "clicks": h, "conversions": 1,
             "spend": Decimal(h) / 4, "revenue": Decimal(h)} for h in range(50)])
        MetricsWriter(client, known_orgs=[ORG]).write_events([
            {"timestamp": now, "org_id": ORG, "user_id": uuid.UUID(int=u), "event_type": "login"}
            for u in range(5)])
    return config


def drop(config: Settings) -> None:
    with connect(config) as client:
        client.command(f"DROP DATABASE IF EXISTS {client.database} SYNC")


def test_round_trip_restores_tables_views_and_dictionaries(source: Settings, tmp_path: Path) -> None:
    target = settings_for(source.home, source.postgres_url or "", f"dst_{uuid.uuid4().hex[:8]}")
    try:
        folder = ch_backup.backup(source, tmp_path)
        with connect(source) as client:
            before = ch_backup.states(client, client.database)
        assert before["campaign_metrics_raw"].rows == 50
        found = Endpoints(postgres=target.postgres_url, clickhouse=target.clickhouse_url,
                          redis=None)
        (result,) = restore_any(found, ["clickhouse"], folder, verify=True)
        assert result.tables == before
        with connect(target) as client:
            kinds = dict(client.rows("SELECT name, engine FROM system.tables"
                                     " WHERE database = currentDatabase()"))
            assert kinds["campaign_metrics_hourly_mv"] == "MaterializedView"
            assert kinds["organizations_dict"] == "Dictionary"
            assert client.rows("SELECT sum(spend) FROM campaign_metrics_daily") == [
                (Decimal(sum(range(50))) / 4,)]  # not doubled by the views
            MetricsWriter(client, known_orgs=[ORG]).write_raw([{
                "timestamp": dt.datetime.now(dt.UTC), "org_id": ORG, "campaign_id": uuid.UUID(int=9),
                "dsp_type": "dv360", "impressions": 1, "clicks": 0, "conversions": 0,
                "spend": Decimal("1.00"), "revenue": Decimal("0")}])
            assert client.rows("SELECT count() FROM campaign_metrics_hourly"
                               " WHERE campaign_id = {c:UUID}", {"c": uuid.UUID(int=9)}) == [(1,)]
    finally:
        drop(source)
        drop(target)


def test_bad_backups_and_non_empty_targets_are_refused_untouched(source: Settings,
                                                                 tmp_path: Path) -> None:
    try:
        folder = ch_backup.backup(source, tmp_path)
        data = folder / "data" / "campaign_metrics_raw.native"
        original = data.read_bytes()
        data.write_bytes(original[:-10])
        with pytest.raises(ValidationError, match="does not match its manifest"):
            ch_backup.restore(source, folder)
        data.write_bytes(original)
        with pytest.raises(ValidationError, match="not empty"):
            ch_backup.restore(source, folder)
        with connect(source) as client:
            client.command("TRUNCATE TABLE user_events")
        result = ch_backup.restore(source, folder, force=True, verify=True)
        assert result.tables["user_events"].rows == 5
    finally:
        drop(source)

"""ClickHouse backup and restore: exact round trips in steady state, refusals, staged switch."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from platformdb.backup.manifest import MANIFEST
from platformdb.clickhouse import connect, rows
from platformdb.clickhouse.writer import MetricsWriter
from platformdb.config import Settings
from platformdb.errors import CheckFailed, ValidationError
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.ops.backup import restore as restore_stores
from platformdb.stores.clickhouse import backup as ch_backup
from platformdb.stores.clickhouse.dictionaries import NOWHERE
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders
from platformdb.types import Endpoints
from tests.conftest import clickhouse_url

ORG = uuid.UUID(int=0xFEED)
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)


def restore_any(config: Settings, store: str, folder: Path, *, verify: bool = False,
                force: bool = False) -> list[Any]:
    """``platformdb restore STORE PATH`` through the store objects, for ``config``."""
    found = Endpoints(postgres=config.postgres_url, clickhouse=config.clickhouse_url,
                      redis=None, home=config.home)
    return restore_stores(found, [store], folder, verify=verify, force=force)


def settings_for(home: Path, pg: str, database: str) -> Settings:
    return Settings(home=home, postgres_url=pg,
                    clickhouse_url=f"chdb://{home / 'test-clickhouse'}?database={database}")


def metric(when: dt.datetime, campaign: int, spend: str = "1.25") -> dict[str, Any]:
    return {"timestamp": when, "org_id": ORG, "campaign_id": uuid.UUID(int=campaign),
            "dsp_type": "dv360", "impressions": 100, "clicks": 3, "conversions": 1,
            "spend": Decimal(spend), "revenue": Decimal(spend) * 2}


@pytest.fixture
def source(stack_home: Path, migrated_template: str, pg_admin_url: str) -> Iterator[Settings]:
    from tests.conftest import with_database

    pg = with_database(pg_admin_url, migrated_template)
    config = settings_for(stack_home, pg, f"src_{uuid.uuid4().hex[:8]}")
    with connect(clickhouse_url(config)) as client:
        Migrator(ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE)),
                 discover(migrations_dir("clickhouse"))).up()
        writer = MetricsWriter(client, known_orgs=[ORG])
        writer.write_raw([{**metric(NOW - dt.timedelta(hours=h), h % 3), "impressions": 100 * h,
                           "clicks": h, "spend": Decimal(h) / 4, "revenue": Decimal(h)}
                          for h in range(50)])
        writer.write_events([{"timestamp": NOW, "org_id": ORG, "user_id": uuid.UUID(int=u),
                              "event_type": "login"} for u in range(5)])
    yield config
    drop(config)


@pytest.fixture
def target(source: Settings) -> Iterator[Settings]:
    config = settings_for(source.home, source.postgres_url or "", f"dst_{uuid.uuid4().hex[:8]}")
    yield config
    drop(config)


def drop(config: Settings) -> None:
    with connect(clickhouse_url(config)) as client:
        client.command(f"DROP DATABASE IF EXISTS {client.database} SYNC")


def databases(client: Client) -> set[str]:
    return {str(name) for (name,) in rows(client, "SELECT name FROM system.databases")}


@pytest.mark.slow
def test_round_trip_restores_tables_views_and_dictionaries(source: Settings, target: Settings,
                                                           tmp_path: Path) -> None:
    folder = ch_backup.backup(clickhouse_url(source), tmp_path)
    with connect(clickhouse_url(source)) as client:
        before = ch_backup.states(client, str(client.database))
    assert before["campaign_metrics_raw"].rows == 50
    (result,) = restore_any(target, "clickhouse", folder, verify=True)
    assert result.tables == before
    with connect(clickhouse_url(target)) as client:
        kinds = dict(rows(client, "SELECT name, engine FROM system.tables"
                                  " WHERE database = currentDatabase()"))
        assert kinds["campaign_metrics_hourly_mv"] == "MaterializedView"
        assert kinds["organizations_dict"] == "Dictionary"
        assert rows(client, "SELECT sum(spend) FROM campaign_metrics_daily") == [
            (Decimal(sum(range(50))) / 4,)]  # not doubled by the views
        MetricsWriter(client, known_orgs=[ORG]).write_raw([metric(NOW, 9, "1.00")])
        assert rows(client, "SELECT count() FROM campaign_metrics_hourly"
                            " WHERE campaign_id = {c:UUID}", {"c": uuid.UUID(int=9)}) == [(1,)]


@pytest.mark.slow
def test_backups_are_compressed(source: Settings, tmp_path: Path) -> None:
    folder = ch_backup.backup(clickhouse_url(source), tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["extra"]["compression"] == "zstd"
    data = folder / "data" / "campaign_metrics_raw.native.zst"
    assert data.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    with connect(clickhouse_url(source)) as client:
        plain = client.raw_query("SELECT * FROM campaign_metrics_raw", fmt="Native")
    assert data.stat().st_size < len(plain)


@pytest.mark.slow
def test_a_backup_with_rows_past_the_ttl_and_unmerged_rollups_restores_exactly(
        source: Settings, target: Settings, tmp_path: Path) -> None:
    """Steady state: raw rows sit at the TTL edge (here: past it, not yet expired) and rollups
    have unmerged parts. The restore loads exactly them; the TTL applies afterwards."""
    with connect(clickhouse_url(source)) as client:
        client.command("SYSTEM STOP TTL MERGES campaign_metrics_raw")
        client.command("SYSTEM STOP MERGES campaign_metrics_hourly")
        writer = MetricsWriter(client, known_orgs=[ORG])
        old = NOW - dt.timedelta(days=91)
        for batch in range(4):  # four parts of the same hourly keys
            writer.write_raw([metric(old + dt.timedelta(minutes=batch), c) for c in range(3)])
            writer.write_raw([metric(NOW - dt.timedelta(minutes=batch), c) for c in range(3)])
        expired = rows(client, "SELECT count() FROM campaign_metrics_raw"
                               " WHERE timestamp < now() - INTERVAL 90 DAY")[0][0]
        parts = rows(client, "SELECT count() FROM system.parts WHERE active"
                             " AND database = currentDatabase()"
                             " AND table = 'campaign_metrics_hourly'")[0][0]
        folder = ch_backup.backup(clickhouse_url(source), tmp_path)
        before = ch_backup.states(client, str(client.database))
        client.command("SYSTEM START TTL MERGES campaign_metrics_raw")
        client.command("SYSTEM START MERGES campaign_metrics_hourly")
    assert expired == 12 and parts > 1
    (result,) = restore_any(target, "clickhouse", folder, verify=True)
    assert result.tables == before  # the 12 expired rows and every unmerged row came back
    with connect(clickhouse_url(target)) as client:
        client.command("OPTIMIZE TABLE campaign_metrics_raw FINAL")  # the TTL applies as usual
        assert rows(client, "SELECT count() FROM campaign_metrics_raw"
                            " WHERE timestamp < now() - INTERVAL 90 DAY") == [(0,)]


@pytest.mark.slow
def test_bad_backups_and_non_empty_targets_are_refused_untouched(source: Settings,
                                                                 tmp_path: Path) -> None:
    url = clickhouse_url(source)
    folder = ch_backup.backup(url, tmp_path)
    data = folder / "data" / "campaign_metrics_raw.native.zst"
    original = data.read_bytes()
    data.write_bytes(original[:-10])
    with pytest.raises(ValidationError, match="does not match its manifest"):
        ch_backup.restore(url, folder)
    data.write_bytes(original)
    with pytest.raises(ValidationError, match="not empty"):
        ch_backup.restore(url, folder)
    with connect(url) as client:
        client.command("TRUNCATE TABLE user_events")
    result = ch_backup.restore(url, folder, force=True, verify_after=True)
    assert result.tables["user_events"].rows == 5


@pytest.mark.slow
def test_a_failed_verify_changes_nothing_in_the_target(source: Settings, target: Settings,
                                                       tmp_path: Path) -> None:
    folder = ch_backup.backup(clickhouse_url(source), tmp_path)
    with connect(clickhouse_url(target)) as client:  # a target with data of its own
        Migrator(ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE)),
                 discover(migrations_dir("clickhouse"))).up()
        MetricsWriter(client, known_orgs=[ORG]).write_raw([metric(NOW, 77, "9.99")])
        before = ch_backup.states(client, str(client.database))
        schema = ch_backup.objects(client, str(client.database))
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["tables"]["campaign_metrics_raw"]["rows"] += 1  # what the data will not match
        (folder / MANIFEST).write_text(json.dumps(manifest))
        staged = ch_backup.stage(client, folder, force=True)
        assert staged.scratch in databases(client)
        assert ch_backup.states(client, str(client.database)) == before  # staging touched nothing
        with pytest.raises(CheckFailed, match="campaign_metrics_raw: expected 51 rows"):
            ch_backup.verify(client, staged)
        ch_backup.discard(client, staged)
        assert ch_backup.states(client, str(client.database)) == before
        assert ch_backup.objects(client, str(client.database)) == schema
        assert not any(name.startswith(f"{client.database}_restore_") for name in databases(client))
        with pytest.raises(CheckFailed):
            ch_backup.restore(clickhouse_url(target), folder, force=True)
        assert ch_backup.states(client, str(client.database)) == before


@pytest.mark.slow
def test_stage_switch_undo_and_commit(source: Settings, target: Settings,
                                      tmp_path: Path) -> None:
    """What restore all drives: staged and verified first, switched, undone or committed."""
    folder = ch_backup.backup(clickhouse_url(source), tmp_path)
    with connect(clickhouse_url(source)) as client:
        expected = ch_backup.states(client, str(client.database))
    with connect(clickhouse_url(target)) as client:
        Migrator(ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE)),
                 discover(migrations_dir("clickhouse"))).up()
        MetricsWriter(client, known_orgs=[ORG]).write_raw([metric(NOW, 77, "9.99")])
        own = ch_backup.states(client, str(client.database))
        schema = ch_backup.objects(client, str(client.database))
    staged = ch_backup.StagedRestore(clickhouse_url(target), folder, force=True)
    staged.switch()
    assert ch_backup.states(staged.client, staged.staged.target) == expected
    staged.undo()  # another store failed to switch: this one goes back
    assert ch_backup.states(staged.client, staged.staged.target) == own
    assert ch_backup.objects(staged.client, staged.staged.target) == schema
    staged.discard()
    with connect(clickhouse_url(target)) as client:
        assert ch_backup.states(client, str(client.database)) == own
        assert not any(n.startswith(f"{client.database}_restore_") for n in databases(client))
    again = ch_backup.StagedRestore(clickhouse_url(target), folder, force=True)
    again.switch()
    again.commit()
    assert again.report.tables == expected
    with connect(clickhouse_url(target)) as client:
        assert ch_backup.states(client, str(client.database)) == expected
        assert again.staged.scratch not in databases(client)
        assert rows(client, "SELECT count() FROM campaign_metrics_raw"
                            " WHERE campaign_id = {c:UUID}", {"c": uuid.UUID(int=77)}) == [(0,)]
        MetricsWriter(client, known_orgs=[ORG]).write_raw([metric(NOW, 78, "1.00")])
        assert rows(client, "SELECT count() FROM campaign_metrics_daily"
                            " WHERE campaign_id = {c:UUID}", {"c": uuid.UUID(int=78)}) == [(1,)]

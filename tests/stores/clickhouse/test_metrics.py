"""stats and the exporter count live ClickHouse rows, not lightweight-deleted ones."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse.writer import MetricsWriter
from platformdb.stores.clickhouse.metrics import collect, live_rows
from tests.clickhouse.conftest import scalar

ORG, OTHER = uuid.UUID(int=0x5A), uuid.UUID(int=0x5B)


@pytest.mark.slow
def test_rows_are_live_rows_after_a_lightweight_delete(ch: Client) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    MetricsWriter(ch, known_orgs=[ORG, OTHER]).write_raw([
        {"timestamp": now - dt.timedelta(minutes=m), "org_id": org, "campaign_id": uuid.uuid4(),
         "dsp_type": "dv360", "impressions": 1, "clicks": 0, "conversions": 0,
         "spend": Decimal("0.10"), "revenue": Decimal("0")}
        for m in range(300) for org in (ORG, OTHER)])
    stored = int(str(scalar(ch, "SELECT sum(rows) FROM system.parts WHERE active"
                                " AND database = currentDatabase()")))
    assert live_rows(ch) == stored
    for table in ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily"):
        ch.command(f"DELETE FROM {table} WHERE org_id = {{o:UUID}}", parameters={"o": OTHER})
    parts = int(str(scalar(ch, "SELECT sum(rows) FROM system.parts WHERE active"
                               " AND database = currentDatabase()")))
    live = sum(int(str(scalar(ch, f"SELECT count() FROM {t}"))) for t in (
        "campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily",
        "platformdb_schema_migrations"))
    assert parts == stored  # the deleted rows are still in the parts until a merge
    assert live_rows(ch) == live < stored
    (metric,) = [m for m in collect(ch) if m.name == "rows"]
    assert metric.value == live

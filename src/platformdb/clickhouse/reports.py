"""Report queries on the rollups: campaign and org totals, top campaigns, KPIs.

Every query reads ``campaign_metrics_hourly`` or ``campaign_metrics_daily``
with ``sum() ... GROUP BY``, so results are exact whether or not
SummingMergeTree has merged the parts yet. Every query takes the tenant as a
mandatory parameter and filters on it first (it leads the sorting key): one
org's report never includes another org's rows.

KPIs: CTR = clicks / impressions, CPC = spend / clicks, CPM = spend x 1000 /
impressions, ROAS = revenue / spend; ``None`` when the denominator is 0.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from platformdb.clickhouse import rows as query_rows
from platformdb.errors import ValidationError

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

Grain = Literal["hour", "day"]
TOP_BY = ("spend", "revenue", "impressions", "clicks", "conversions")


@dataclass(frozen=True)
class Totals:
    period: dt.date | dt.datetime | None
    campaign_id: uuid.UUID | None
    impressions: int
    clicks: int
    conversions: int
    spend: Decimal
    revenue: Decimal

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def cpc(self) -> Decimal | None:
        return (self.spend / self.clicks).quantize(Decimal("0.0001")) if self.clicks else None

    @property
    def cpm(self) -> Decimal | None:
        return ((self.spend * 1000) / self.impressions).quantize(Decimal("0.0001")) \
            if self.impressions else None

    @property
    def roas(self) -> Decimal | None:
        return (self.revenue / self.spend).quantize(Decimal("0.0001")) if self.spend else None


def _source(grain: Grain) -> tuple[str, str, str]:
    """(table, time column, its select expression)."""
    if grain == "hour":
        return "campaign_metrics_hourly", "hour", "toDateTime64(hour, 0, 'UTC')"
    if grain == "day":
        return "campaign_metrics_daily", "date", "date"
    raise ValidationError(f"grain must be 'hour' or 'day', got {grain!r}")


def _range(start: dt.date, end: dt.date) -> dict[str, str]:
    if end < start:
        raise ValidationError(f"end {end} is before start {start}")
    return {"start": start.isoformat(), "end": end.isoformat()}


SUMS = ("sum(impressions), sum(clicks), sum(conversions), toDecimal128(sum(spend), 2),"
        " toDecimal128(sum(revenue), 2)")


def campaign_totals(client: Client, org_id: uuid.UUID, start: dt.date, end: dt.date,
                    grain: Grain = "day", campaign_id: uuid.UUID | None = None) -> list[Totals]:
    """Per campaign and period, ``start`` to ``end`` inclusive (days, UTC)."""
    table, column, period = _source(grain)
    where = "AND campaign_id = {campaign:UUID}" if campaign_id else ""
    params: dict[str, object] = {"org": org_id, **_range(start, end)}
    if campaign_id:
        params["campaign"] = campaign_id
    rows = query_rows(
        client, f"SELECT {period} AS period, campaign_id, {SUMS} FROM {table}"  # noqa: S608 (fixed fragments, see _source)
        f" WHERE org_id = {{org:UUID}} AND toDate({column}) BETWEEN {{start:Date}} AND {{end:Date}}"
        f" {where} GROUP BY period, campaign_id ORDER BY period, campaign_id", params)
    return [Totals(*row) for row in rows]


def org_totals(client: Client, org_id: uuid.UUID, start: dt.date, end: dt.date,
               grain: Grain = "day") -> list[Totals]:
    """The whole org per period."""
    table, column, period = _source(grain)
    rows = query_rows(
        client, f"SELECT {period} AS period, {SUMS} FROM {table}"  # noqa: S608 (fixed fragments, see _source)
        f" WHERE org_id = {{org:UUID}} AND toDate({column}) BETWEEN {{start:Date}} AND {{end:Date}}"
        " GROUP BY period ORDER BY period",
        {"org": org_id, **_range(start, end)})
    return [Totals(row[0], None, *row[1:]) for row in rows]


def top_campaigns(client: Client, org_id: uuid.UUID, start: dt.date, end: dt.date,
                  by: str = "spend", limit: int = 10) -> list[Totals]:
    """The org's campaigns with the most ``by`` over the range, with their totals."""
    if by not in TOP_BY:
        raise ValidationError(f"by must be one of {', '.join(TOP_BY)}, got {by!r}")
    if not 1 <= limit <= 10_000:
        raise ValidationError("limit must be between 1 and 10000")
    rows = query_rows(
        client, f"SELECT campaign_id, {SUMS} FROM campaign_metrics_daily"  # noqa: S608 (fixed fragments, see _source)
        " WHERE org_id = {org:UUID} AND date BETWEEN {start:Date} AND {end:Date}"
        f" GROUP BY campaign_id ORDER BY sum({by}) DESC, campaign_id LIMIT {{limit:UInt32}}",
        {"org": org_id, "limit": limit, **_range(start, end)})
    return [Totals(None, *row) for row in rows]


def campaign_names(client: Client, org_id: uuid.UUID,
                   campaign_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Names from PostgreSQL through ``campaigns_dict``, keyed by (org, campaign): campaign
    ids are unique only within an org, so another org's campaign never lends its name."""
    if not campaign_ids:
        return {}
    rows = query_rows(
        client, "SELECT id, dictGet('campaigns_dict', 'name', ({org:UUID}, id)) FROM"
                " (SELECT arrayJoin({ids:Array(UUID)}) AS id)"
                " WHERE dictHas('campaigns_dict', ({org:UUID}, id))",
        {"ids": campaign_ids, "org": org_id})
    return {row[0]: row[1] for row in rows}

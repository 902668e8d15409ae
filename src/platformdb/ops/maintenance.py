"""``platformdb partitions ensure`` and ``platformdb retention apply`` (run them from cron)."""

from __future__ import annotations

from dataclasses import dataclass

from platformdb import clickhouse
from platformdb.errors import when_interrupted
from platformdb.ops.context import Context, context
from platformdb.stores.clickhouse.metrics import ttl_state
from platformdb.stores.postgres import partitions
from platformdb.types import Endpoints


def ensure_partitions(target: Context | Endpoints, months: int = 3) -> dict[str, int]:
    """Create this month's partitions and the next ``months`` (idempotent); per table, how
    many were new."""
    with when_interrupted("the partitions created so far stay (each is its own step); run it "
                          "again to finish"):
        return partitions.ensure(context(target).url("postgresql"), months_ahead=months)


@dataclass
class Retention:
    """What ``retention apply`` dropped (or would drop), and ClickHouse's own TTLs."""

    report: partitions.RetentionReport
    clickhouse_ttl: dict[str, str]


def apply_retention(target: Context | Endpoints, policy: dict[str, int], *,
                    dry_run: bool = False) -> Retention:
    """Drop months of campaign_metrics / audit_logs past ``policy`` (days per table; the
    defaults for the others) and purge dead tokens; ClickHouse expires rows itself, by TTL."""
    ctx = context(target)
    with when_interrupted("what was dropped or purged so far stays (each table and token "
                          "batch is its own transaction); run it again to finish"):
        report = partitions.apply_retention(ctx.url("postgresql"), policy, dry_run=dry_run)
    with clickhouse.connect(ctx.url("clickhouse")) as client:
        return Retention(report, ttl_state(client))

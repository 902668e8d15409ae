"""`platformdb etl ...`: move data between the stores."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer

from platformdb.cli.base import (
    JsonOption,
    app,
    context,
    print_json,
    show,
)
from platformdb.errors import CheckFailed, ConfigError
from platformdb.ops import etl

# ---------------------------------------------------------------------- ETL

etl_app = typer.Typer(help="Move data between the stores.", no_args_is_help=True)
app.add_typer(etl_app, name="etl")


def parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{option} {value!r} is not a date like 2026-01-31") from exc


@etl_app.command("sync-daily")
def etl_sync_daily(
    day: Annotated[str | None, typer.Option("--date", metavar="DAY",
                                            help="One day (default: yesterday, UTC).")] = None,
    start: Annotated[str | None, typer.Option("--from", metavar="DAY",
                                              help="First day of a range.")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="DAY",
                                            help="Last day of a range.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Copy ClickHouse daily totals into PostgreSQL campaign_metrics (idempotent)."""
    if day and (start or end):
        raise ConfigError("give --date or --from/--to, not both")
    if bool(start) != bool(end):
        raise ConfigError("--from and --to go together")
    if day:
        first = last = parse_day(day, "--date")
    elif start and end:
        first, last = parse_day(start, "--from"), parse_day(end, "--to")
    else:
        first = last = datetime.now(UTC).date() - timedelta(days=1)
    report = etl.sync(context(start=True, stores=["postgresql", "clickhouse"]), first, last)
    if as_json:
        print_json({**asdict(report), "written": report.written})
    else:
        show(f"sync-daily {report.start}..{report.end}: read {report.read} ClickHouse rows ="
             f" {report.inserted} new + {report.updated} changed + {report.unchanged} unchanged"
             f" + {report.skipped_unknown_campaigns} skipped (unknown campaigns)"
             f" + {report.skipped_too_large} skipped (too large for PostgreSQL);"
             f" deleted {report.deleted} PostgreSQL rows ClickHouse no longer has;"
             f" {report.orgs} org(s), {report.duration_ms} ms")
    if report.too_large:
        first_key = report.too_large[0]
        raise CheckFailed(
            f"{report.skipped_too_large} campaign-day total(s) exceed PostgreSQL's"
            f" campaign_metrics columns and were not synced (first: org {first_key[0]}, campaign"
            f" {first_key[1]}, {first_key[2]}, {first_key[3]}); widen the columns"
            " (a PostgreSQL migration) and run the sync again")

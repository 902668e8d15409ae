"""`platformdb partitions ensure` and `platformdb retention apply` (cron)."""

from __future__ import annotations

from typing import Annotated

import typer

from platformdb.cli.base import (
    DryRunOption,
    JsonOption,
    app,
    context,
    print_json,
    show,
)
from platformdb.ops import maintenance

# ------------------------------------------------------------- maintenance

partitions_app = typer.Typer(help="Date partitions of campaign_metrics and audit_logs.",
                             no_args_is_help=True)
app.add_typer(partitions_app, name="partitions")
retention_app = typer.Typer(help="Drop data past its retention window.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@partitions_app.command("ensure")
def partitions_ensure(
    months: Annotated[int, typer.Option("--months", metavar="N",
                                        help="Months ahead of this one.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Create this month's partitions and the next ones (idempotent; run it from cron)."""
    created = maintenance.ensure_partitions(context(start=True, stores=["postgresql"]), months)
    if as_json:
        print_json({"created": created})
        return
    for table, count in created.items():
        show(f"{table}: {count} new monthly partition(s)")


@retention_app.command("apply")
def retention_apply(
    metrics_days: Annotated[int | None, typer.Option("--metrics-days", metavar="DAYS")] = None,
    audit_days: Annotated[int | None, typer.Option("--audit-days", metavar="DAYS")] = None,
    token_days: Annotated[int | None, typer.Option("--token-days", metavar="DAYS")] = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Drop months of campaign_metrics / audit_logs past retention; purge dead tokens."""
    policy = {name: days for name, days in (("campaign_metrics", metrics_days),
                                             ("audit_logs", audit_days),
                                             ("auth_tokens", token_days)) if days is not None}
    done = maintenance.apply_retention(context(start=True, stores=["postgresql", "clickhouse"]),
                                       policy, dry_run=dry_run)
    report, ttls = done.report, done.clickhouse_ttl
    if as_json:
        print_json({"dry_run": dry_run, "dropped_partitions": report.dropped_partitions,
                    "cutoffs": report.cutoffs, "deleted_tokens": report.deleted_tokens,
                    "clickhouse_ttl": ttls})
        return
    verb = "would drop" if dry_run else "dropped"
    for table, names in report.dropped_partitions.items():
        show(f"{table}: {verb} {len(names)} partition(s) before {report.cutoffs[table]}"
             + (f": {', '.join(names)}" if names else ""))
    if not dry_run:
        show(f"auth_tokens: deleted {report.deleted_tokens} expired or revoked token(s)")
    for table, ttl in ttls.items():
        show(f"clickhouse {table}: TTL {ttl} (expired rows go in background merges)")

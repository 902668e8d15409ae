"""`platformdb migrate ...`: apply and inspect the migrations of every store."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from platformdb.cli.base import (
    ClusterOption,
    DryRunOption,
    JsonOption,
    OneStoreOption,
    StoreOption,
    app,
    context,
    err,
    print_json,
    show,
)
from platformdb.errors import CheckFailed, ConfigError
from platformdb.migrate.planning import MigrationPlan, StatementPlan, Target, size_text
from platformdb.ops import migrations as ops
from platformdb.redaction import redact_text
from platformdb.types import Step

migrate_app = typer.Typer(help="Apply and inspect schema migrations.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")

LockTimeoutOption = Annotated[str | None, typer.Option(
    "--lock-timeout", metavar="DURATION",
    help="How long each attempt may queue for a lock, e.g. 2s or 500ms "
         "(PLATFORMDB_MIGRATE_LOCK_TIMEOUT, default 2s).")]
LockRetriesOption = Annotated[int | None, typer.Option(
    "--lock-retries", metavar="N",
    help="Attempts after the first when a lock is not granted in time "
         "(PLATFORMDB_MIGRATE_LOCK_RETRIES, default 10).")]
RunnerWaitOption = Annotated[str | None, typer.Option(
    "--runner-wait", metavar="DURATION",
    help="How long to wait for another runner's migration lock "
         "(PLATFORMDB_MIGRATE_RUNNER_WAIT, default 5min).")]


def show_steps(steps: list[Step], dry_run: bool, as_json: bool = False) -> None:
    if as_json:
        print_json([asdict(step) for step in steps])
        return
    if not steps:
        show("nothing to do: every migration is applied")
        return
    for step in steps:
        verb = "would apply" if dry_run and step.direction == "up" else (
            "would revert" if dry_run else ("applied" if step.direction == "up" else "reverted"))
        timing = f" ({step.duration_ms} ms)" if step.duration_ms is not None else ""
        show(f"{step.store}: {verb} {step.label}{timing}")


def show_plans(plans: list[MigrationPlan], as_json: bool = False) -> None:
    """Each pending migration's statements: a table on a terminal, full text when piped."""
    if as_json:
        print_json([p.to_dict() for p in plans])
        return
    if not plans:
        show("nothing to do: every migration is applied")
        return
    for plan in plans:
        colour = SEVERITY_STYLE[plan.severity]
        show(f"[bold]{plan.store}: would apply {plan.label}[/] ({plan.mode}; "
             f"[{colour}]{plan.severity}[/])")
        if sys.stdout.isatty():
            show(plan_table(plan))
        for statement in plan.statements:
            if not sys.stdout.isatty():
                show(plan_text(statement), markup=False)
            elif statement.severity != "ok":
                for why in statement.why:
                    show(f"  line {statement.line}: [{SEVERITY_STYLE[statement.severity]}]"
                         f"{escape(why)}[/]")
                for instead in statement.instead:
                    show(f"    instead: {escape(instead)}")


SEVERITY_STYLE = {"ok": "green", "caution": "yellow", "danger": "red"}


def plan_table(plan: MigrationPlan) -> Table:
    table = Table("line", "statement", "lock", "on", "does", "size", "verdict")
    for statement in plan.statements:
        first_line = " ".join(statement.sql.split())
        summary = first_line if len(first_line) <= 60 else first_line[:57] + "..."
        style = SEVERITY_STYLE[statement.severity]
        targets: list[Target | None] = list(statement.targets) or [None]
        for index, target in enumerate(targets):
            head = index == 0
            does = "" if target is None else target.action + "".join(
                f" [{flag}]" for flag, on in (("rewrite", target.rewrite), ("scan", target.scan),
                                              ("build", target.build)) if on)
            table.add_row(
                str(statement.line) if head else "", escape(summary) if head else "",
                escape(target.lock if target else statement.lock) or "-",
                escape(target.relation or "-") if target else "-", escape(does),
                size_text(target) if target else "",
                f"[{style}]{statement.severity}[/]" if head else "")
    return table


def plan_text(statement: StatementPlan) -> str:
    """A statement's plan in full, for logs and reviews (nothing cut)."""
    lines = [f"  line {statement.line}: {statement.statement} [{statement.lock or 'no lock'}]"
             f" {statement.severity}"]
    lines += [f"    | {line}" for line in statement.sql.splitlines()]
    for target in statement.targets:
        flags = ", ".join(flag for flag, on in (("rewrites", target.rewrite),
                                                ("scans", target.scan),
                                                ("builds an index", target.build),
                                                ("drops data", target.destructive)) if on)
        lines.append(f"    - {target.relation or '-'}: {target.lock or 'no lock'}, {target.action}"
                     f"; {size_text(target)}" + (f"; {flags}" if flags else "")
                     + (f"; blocks {target.blocks}" if target.blocks and target.lock not in (
                         "", "metadata") else "") + (f"; {target.note}" if target.note else ""))
    lines += [f"    why: {why}" for why in statement.why]
    lines += [f"    instead: {instead}" for instead in statement.instead]
    return "\n".join(lines)


@migrate_app.command("plan")
def migrate_plan(
    store: StoreOption = None,
    to: Annotated[int | None, typer.Option("--to", metavar="N",
                                           help="Plan up to this number.")] = None,
    cluster: ClusterOption = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 when a statement is flagged danger (for CI).")] = False,
    as_json: JsonOption = False,
) -> None:
    """What each pending statement would do: its lock, rewrite or scan, the live size
    of what it touches, and dangers with the safe alternative. Changes nothing.

    [bold]Examples[/]

      platformdb migrate plan                     every store
      platformdb migrate plan -s postgresql --json
      platformdb migrate plan --strict            exit 1 on a dangerous statement
    """
    ctx = context(start=False, stores=store, cluster=cluster, migrate=ops.flags())
    plans = ops.plan(ctx, store, to=to)
    show_plans(plans, as_json)
    dangerous = [f"{p.label} line {s.line}" for p in plans for s in p.statements
                 if s.severity == "danger"]
    if strict and dangerous:
        raise CheckFailed(f"{len(dangerous)} dangerous statement(s), first {dangerous[0]}")


@migrate_app.command("up")
def migrate_up(
    store: StoreOption = None,
    to: Annotated[int | None, typer.Option("--to", metavar="N",
                                           help="Stop after this number.")] = None,
    dry_run: DryRunOption = False,
    cluster: ClusterOption = None,
    as_json: JsonOption = False,
    lock_timeout: LockTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    runner_wait: RunnerWaitOption = None,
) -> None:
    """Apply every pending migration (and load the Redis scripts). On the embedded stack,
    PostgreSQL's platform_test database is migrated too.

    [bold]Examples[/]

      platformdb migrate up                       every store
      platformdb migrate up -s postgresql --to 3  PostgreSQL up to 003
      platformdb migrate up --dry-run             what would run (= migrate plan)
    """
    flags = ops.flags(lock_timeout, lock_retries, runner_wait)
    ctx = context(start=True, stores=store, cluster=cluster, migrate=flags)
    if dry_run:
        show_plans(ops.plan(ctx, store, to=to), as_json)
        return
    show_steps(ops.up(ctx, store, to=to), dry_run, as_json)


@migrate_app.command("down")
def migrate_down(store: OneStoreOption = "postgresql", dry_run: DryRunOption = False,
                 as_json: JsonOption = False, lock_timeout: LockTimeoutOption = None,
                 lock_retries: LockRetriesOption = None,
                 runner_wait: RunnerWaitOption = None) -> None:
    """Revert the last applied migration through its .down.sql."""
    ctx = context(start=True, stores=[store],
                  migrate=ops.flags(lock_timeout, lock_retries, runner_wait))
    show_steps([ops.down(ctx, store, dry_run=dry_run)], dry_run, as_json)


@migrate_app.command("run")
def migrate_run(
    number: Annotated[str, typer.Argument(help="The migration number, e.g. 001.")],
    store: OneStoreOption = "postgresql",
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    lock_timeout: LockTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    runner_wait: RunnerWaitOption = None,
) -> None:
    """Apply exactly one migration (every earlier one must be applied)."""
    if not number.isdigit():
        raise ConfigError(f"{number!r} is not a migration number like 001")
    ctx = context(start=True, stores=[store],
                  migrate=ops.flags(lock_timeout, lock_retries, runner_wait))
    show_steps([ops.run(ctx, store, int(number), dry_run=dry_run)], dry_run, as_json)


@migrate_app.command("status")
def migrate_status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show each migration: applied, baselined, pending, edited or missing (Redis: changed,
    not on server)."""
    report = ops.status(context(start=False, stores=store), store)
    if as_json:
        print_json({name: [asdict(row) for row in rows] for name, rows in report.items()})
        return
    for name, rows in report.items():
        table = Table("version", "name", "state", "applied at", "ms", "by", title=name)
        for row in rows:
            style = {"applied": "green", "baselined": "green",
                     "pending": "yellow"}.get(row.state, "red")
            table.add_row(f"{row.version:03d}", row.name, f"[{style}]{row.state}[/]",
                          row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-",
                          str(row.duration_ms) if row.duration_ms is not None else "-",
                          row.applied_by or "-")
        show(table)


ScratchOption = Annotated[str | None, typer.Option(
    "--scratch-url", metavar="URL",
    help="PostgreSQL: a server where the scratch database may be created "
         "(PLATFORMDB_MIGRATE_SCRATCH_URL; default: the target's own server).")]


@migrate_app.command("verify")
def migrate_verify(
    store: StoreOption = None,
    drift: Annotated[bool, typer.Option(
        "--drift", help="Also compare the live schema with what the applied migrations build "
                        "in a scratch database, object by object.")] = False,
    scratch_url: ScratchOption = None,
    cluster: ClusterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check that files parse and that applied files are unchanged; with --drift, that the
    live schema is what they build (exit 1 if not).

    [bold]Examples[/]

      platformdb migrate verify                   files and ledger
      platformdb migrate verify --drift           and every table, column, index, policy,
                                                  grant, function, view, trigger (ClickHouse:
                                                  tables, engines, TTLs, views, dictionaries)
    """
    ctx = context(start=False, stores=store, cluster=cluster,
                  migrate=ops.flags(scratch_url=scratch_url))
    found = ops.verify(ctx, store, drift=drift)
    problems, drifted = found.problems, found.drifted
    if as_json:
        print_json({"ok": found.ok, "problems": problems,
                    "drift": {name: [asdict(d) for d in items]
                              for name, items in found.differences.items()}})
    elif not problems and not drifted:
        show("ok: every applied migration matches its file"
             + ("; the live schema is what they build" if drift else ""))
    failures = problems + drifted
    if failures:
        if not as_json:
            for failure in failures[1:]:
                err.print(f"[red]error:[/] {escape(redact_text(failure))}", soft_wrap=True)
        summary = failures[0] if not drifted else (
            f"{len(drifted)} schema difference(s); first {drifted[0]}" if not problems
            else failures[0])
        raise CheckFailed(summary)


@migrate_app.command("baseline")
def migrate_baseline(
    store: OneStoreOption = "postgresql",
    to: Annotated[int | None, typer.Option(
        "--to", metavar="N", help="Adopt migrations 001..N (default: all).")] = None,
    scratch_url: ScratchOption = None,
    cluster: ClusterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Adopt a database built without platformdb (e.g. with psql -f): record migrations
    001..N as applied, only if its schema equals what they build (exit 1 with the
    differences otherwise).

    [bold]Examples[/]

      platformdb migrate baseline --to 2          a database made with 001 and 002 by psql
      platformdb migrate baseline -s clickhouse
    """
    ctx = context(start=False, stores=[store], cluster=cluster,
                  migrate=ops.flags(scratch_url=scratch_url))
    try:
        steps = ops.baseline(ctx, store, to=to)
    except ops.SchemaDiffers as exc:
        if as_json:
            print_json({"ok": False, "differences": [asdict(d) for d in exc.differences]})
        else:
            for difference in exc.differences[1:]:
                err.print(f"[red]differs:[/] {escape(redact_text(difference.describe()))}",
                          soft_wrap=True)
        raise
    if as_json:
        print_json([asdict(step) for step in steps])
        return
    for step in steps:
        show(f"{step.store}: baselined {step.label}")


@migrate_app.command("backfill")
def migrate_backfill(
    name: Annotated[str, typer.Argument(help="The backfill's name: its progress is kept "
                                             "under it, and rerunning it resumes.")],
    update: Annotated[str | None, typer.Option(
        "--sql", metavar="UPDATE", help="One UPDATE of one table, e.g. \"UPDATE "
        "campaign_metrics SET spend_cents = spend * 100 WHERE spend_cents IS NULL\".")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", metavar="PATH", help="Read the UPDATE from a file.")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", metavar="N", help="Rows per batch (one transaction each).")] = 1000,
    pause: Annotated[float, typer.Option(
        "--pause", metavar="SECONDS", help="Pause between batches.")] = 0.0,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Forget the progress kept under NAME and start over.")] = False,
    status: Annotated[bool, typer.Option(
        "--status", help="Show how far NAME got, per partition; change nothing.")] = False,
    lock_timeout: LockTimeoutOption = None,
    lock_retries: LockRetriesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an UPDATE over a big table in resumable batches (by primary key, partition by
    partition), showing rows done; rerun it to resume after an interruption.

    Runs with row security off, as a role that bypasses it (superuser or BYPASSRLS).

    [bold]Examples[/]

      platformdb migrate backfill spend_cents --sql "UPDATE campaign_metrics
          SET spend_cents = spend * 100 WHERE spend_cents IS NULL" --batch-size 5000
      platformdb migrate backfill spend_cents --status
    """
    ctx = context(start=not status, stores=["postgresql"],
                  migrate=None if status else ops.flags(lock_timeout, lock_retries))
    if status:
        rows = ops.backfill_progress(ctx, name)
        if as_json:
            print_json([asdict(row) for row in rows])
            return
        table = Table("partition", "done", "batches", "rows scanned", "rows updated",
                      "last key", title=f"backfill {name}")
        for row in rows:
            table.add_row(escape(row.partition), "yes" if row.done else "no", str(row.batches),
                          str(row.rows_scanned), str(row.rows_updated),
                          escape(", ".join(row.last_key or [])) or "-")
        show(table if rows else f"backfill {name} has not run")
        return
    if (update is None) == (file is None):
        raise ConfigError("give the UPDATE with --sql or --file (one of them)")
    text = update if update is not None else Path(str(file)).read_text(encoding="utf-8")
    report = ops.backfill(ctx, name, text, batch_size=batch_size, pause=pause, restart=restart)
    if as_json:
        print_json(asdict(report))
        return
    show(f"backfill {name}: {report.rows_updated:,} rows updated of {report.rows_scanned:,} "
         f"scanned in {report.batches:,} batches over {report.partitions} partition(s), "
         f"{report.seconds:.1f} s" + (" (resumed)" if report.resumed else ""))


@migrate_app.command("new")
def migrate_new(
    name: Annotated[str, typer.Argument(help="What the migration does, e.g. add_reports")],
    store: OneStoreOption = "postgresql",
) -> None:
    """Create the next numbered migration and its down file."""
    up_path, down_path = ops.new(store, name)
    show(f"created {up_path}\ncreated {down_path}")

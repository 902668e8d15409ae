"""The ``platformdb`` command: parse, call one library function, print.

Exit codes: 0 success, 1 a check that failed, 2 bad usage, configuration or an
unreachable server. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperOption

from platformdb import __version__, embedded, migrate, stores
from platformdb.config import Settings, load_settings
from platformdb.errors import CheckFailed, ConfigError, PlatformDBError, StoreUnavailable, one_line
from platformdb.redaction import redact, redact_text
from platformdb.redis.functions import FunctionsNotLoaded
from platformdb.stores import Unavailable, open_store, open_stores
from platformdb.types import Endpoints, Step, check_store, check_stores

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
migrate_app = typer.Typer(help="Apply and inspect schema migrations.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")


def _metavar(self: TyperOption, ctx: Any) -> str | None:
    """Help shows conventional metavars (``--to N``), never Typer's ``<bool>``/``<list[str]>``."""
    if self.is_flag or self.count:
        return None
    return self.metavar or self.name.upper() if self.name else None


def _no_type(self: TyperArgument, ctx: Any) -> str | None:
    return None  # an argument's name already says what it takes


TyperOption.display_type_rich = _metavar  # type: ignore[method-assign]
TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign, assignment]

# Piped output is for logs and tools: never wrap or cut a table or a line.
_PIPED_WIDTH = 1_000_000
out = Console(width=None if sys.stdout.isatty() else _PIPED_WIDTH, highlight=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPED_WIDTH,
              highlight=False)

StoreOption = Annotated[
    list[str] | None,
    typer.Option("--store", "-s", metavar="STORE",
                 help="postgresql | clickhouse | redis (repeatable; default: every store)"),
]
OneStoreOption = Annotated[
    str, typer.Option("--store", "-s", metavar="STORE", help="postgresql | clickhouse")]
ClusterOption = Annotated[
    str | None,
    typer.Option("--cluster", metavar="NAME",
                 help="ClickHouse: render ON CLUSTER / Replicated / Distributed DDL "
                      "for this cluster (or PLATFORMDB_CLICKHOUSE_CLUSTER)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for tools.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run",
                                            help="Print what would run; change nothing.")]


def settings(cluster: str | None = None) -> Settings:
    loaded = load_settings()
    return replace(loaded, clickhouse_cluster=cluster) if cluster else loaded


def endpoints(*, start: bool, stores: list[str] | None = None,
              cluster: str | None = None) -> Endpoints:
    """Where the stores are: configuration turned into URLs once, here at the edge.

    ``start``: commands that do work start the embedded servers they need;
    inspection commands (status, health, stats) never do.
    """
    return embedded.endpoints(settings(cluster), start=start, stores=check_stores(stores))


def resolved_settings(found: Endpoints) -> Settings:
    """Settings whose every URL is set, for library calls that take Settings."""
    return replace(settings(found.clickhouse_cluster), postgres_url=found.postgres,
                   redis_url=found.redis, clickhouse_url=found.clickhouse)


def postgres_url(found: Endpoints) -> str:
    return open_store("postgresql", found).require_url()


def print_json(value: Any) -> None:
    """``value`` as JSON on stdout, secrets masked (plain text: tools read it)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime | date):
            return obj.isoformat()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(type(obj).__name__)

    print(redact_text(json.dumps(value, default=default, indent=2)))


def show(renderable: Any, *, markup: bool = True) -> None:
    """A table or a line on stdout, secrets masked, never cut when piped."""
    with out.capture() as captured:
        out.print(renderable, soft_wrap=True, markup=markup)
    sys.stdout.write(redact_text(captured.get()))
    sys.stdout.flush()


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(redact_text(message))}", soft_wrap=True)


def number(value: float) -> str:
    """A metric value in full: integers exactly, fractions without exponent."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _print_version(value: bool) -> None:
    if value:
        print(f"platformdb {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", "-V", help="Print the version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    """Migrate, seed, back up, check and run the platform's PostgreSQL, ClickHouse and Redis.

    [bold]Examples[/]

      platformdb up                      start the embedded stack
      platformdb migrate up              apply every pending migration
      platformdb health --json           check every store, for tools
      eval "$(platformdb env)"           point psql at the stack
    """
    if debug:
        os.environ["PLATFORMDB_DEBUG"] = "1"


# ------------------------------------------------------------ embedded stack


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Start the embedded stack (PostgreSQL, Redis; chDB needs no server)."""
    show_states(embedded.up(settings().home), as_json)


@app.command()
def down(as_json: JsonOption = False) -> None:
    """Stop what `up` started, and nothing else."""
    stopped = embedded.down(settings().home)
    if as_json:
        print_json({"stopped": stopped})
        return
    show(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the embedded stack's services."""
    show_states(embedded.status(settings().home), as_json)


@app.command()
def env() -> None:
    """Print `export` lines; `eval "$(platformdb env)"` points psql at the stack."""
    for line in embedded.env_lines(settings()):
        print(line)


def show_states(states: list[embedded.ServiceState], as_json: bool) -> None:
    if as_json:
        print_json([{**asdict(state), "url": redact(state.url) if state.url else None}
                    for state in states])
        return
    table = Table("service", "state", "pid", "port", "url")
    for state in states:
        table.add_row(state.name, state.detail, str(state.pid or "-"), str(state.port or "-"),
                      redact(state.url) if state.url else "-")
    show(table)


# ---------------------------------------------------------------- migrations


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


@migrate_app.command("up")
def migrate_up(
    store: StoreOption = None,
    to: Annotated[int | None, typer.Option("--to", metavar="N",
                                           help="Stop after this number.")] = None,
    dry_run: DryRunOption = False,
    cluster: ClusterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply every pending migration (and load the Redis scripts).

    [bold]Examples[/]

      platformdb migrate up                       every store
      platformdb migrate up -s postgresql --to 3  PostgreSQL up to 003
      platformdb migrate up --dry-run             what would run
    """
    found = endpoints(start=True, stores=store, cluster=cluster)
    show_steps(stores.apply_pending(found, store, target=to, dry_run=dry_run), dry_run, as_json)


@migrate_app.command("down")
def migrate_down(store: OneStoreOption = "postgresql", dry_run: DryRunOption = False,
                 as_json: JsonOption = False) -> None:
    """Revert the last applied migration through its .down.sql."""
    name = migrate.check_numbered(check_store(store))
    with open_store(name, endpoints(start=True, stores=[name])).open_migrator() as migrator:
        show_steps([migrator.down(dry_run=dry_run)], dry_run, as_json)


@migrate_app.command("run")
def migrate_run(
    number: Annotated[str, typer.Argument(help="The migration number, e.g. 001.")],
    store: OneStoreOption = "postgresql",
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Apply exactly one migration (every earlier one must be applied)."""
    if not number.isdigit():
        raise ConfigError(f"{number!r} is not a migration number like 001")
    name = migrate.check_numbered(check_store(store))
    with open_store(name, endpoints(start=True, stores=[name])).open_migrator() as migrator:
        show_steps([migrator.run(int(number), dry_run=dry_run)], dry_run, as_json)


@migrate_app.command("status")
def migrate_status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show each migration: applied, pending, edited or missing (Redis: changed, not on server)."""
    found = endpoints(start=False, stores=store)
    report = {s.name: s.migration_status() for s in open_stores(found, store)}
    if as_json:
        print_json({name: [asdict(row) for row in rows] for name, rows in report.items()})
        return
    for name, rows in report.items():
        table = Table("version", "name", "state", "applied at", "ms", "by", title=name)
        for row in rows:
            style = {"applied": "green", "pending": "yellow"}.get(row.state, "red")
            table.add_row(f"{row.version:03d}", row.name, f"[{style}]{row.state}[/]",
                          row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-",
                          str(row.duration_ms) if row.duration_ms is not None else "-",
                          row.applied_by or "-")
        show(table)


@migrate_app.command("verify")
def migrate_verify(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Check that files parse and that applied files are unchanged (exit 1 if not)."""
    found = endpoints(start=False, stores=store)
    problems = [f"{s.name}: {problem}" for s in open_stores(found, store)
                for problem in s.verify()]
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    elif not problems:
        show("ok: every applied migration matches its file")
    if problems:
        if not as_json:
            for problem in problems[1:]:
                err.print(f"[red]error:[/] {escape(redact_text(problem))}", soft_wrap=True)
        raise CheckFailed(problems[0])


@migrate_app.command("new")
def migrate_new(
    name: Annotated[str, typer.Argument(help="What the migration does, e.g. add_reports")],
    store: OneStoreOption = "postgresql",
) -> None:
    """Create the next numbered migration and its down file."""
    up_path, down_path = migrate.new_migration(check_store(store), name)
    show(f"created {up_path}\ncreated {down_path}")


# ---------------------------------------------------------------- operations


@app.command()
def health(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Check every store (SELECT 1 / SELECT 1 / PING) and its migrations; exit 1 if unhealthy.

    Never starts anything: a store whose embedded server is down is reported down.
    """
    from platformdb import health as checks

    results = checks.check(endpoints(start=False, stores=store), store)
    if as_json:
        print_json([asdict(r) for r in results])
    else:
        table = Table("store", "healthy", "latency ms", "target", "detail")
        for r in results:
            table.add_row(r.store, "[green]yes[/]" if r.healthy else "[red]no[/]",
                          f"{r.latency_ms:.2f}" if r.latency_ms is not None else "-",
                          escape(r.target), escape(r.detail))
        show(table)
    bad = [r for r in results if not r.healthy]
    if bad:
        raise CheckFailed(f"{bad[0].store}: {bad[0].detail}")


@app.command()
def stats(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Key metrics: connections, latency, sizes, hit ratios, replication lag, memory..."""
    from platformdb import stats as metrics

    found, errors = metrics.collect(endpoints(start=False, stores=store), store)
    if as_json:
        print_json({"metrics": [asdict(m) for m in found], "errors": errors})
        return
    table = Table("store", "metric", "labels", "value", "unit")
    for m in found:
        labels = ",".join(f"{k}={v}" for k, v in sorted(m.labels.items()))
        table.add_row(m.store, m.name, escape(labels) or "-", number(m.value), m.unit or "-")
    show(table)
    for line in errors:
        warn(line)


@app.command()
def exporter(
    port: Annotated[int, typer.Option("--port", metavar="PORT",
                                      help="Port to serve /metrics on.")] = 9187,
    addr: Annotated[str, typer.Option("--addr", metavar="ADDR", help="Address to bind.")]
        = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="Print one scrape and exit.")] = False,
) -> None:
    """Serve the key metrics in Prometheus text format."""
    from platformdb import exporter as prom

    found = endpoints(start=False)
    if once:
        print(prom.render(found), end="")
        return
    show(f"serving metrics on http://{addr}:{port}/metrics")
    prom.serve(found, port, addr)


def store_or_all(store: str) -> list[str] | None:
    """``all`` (every store) or one store's name, checked."""
    return None if store == "all" else [check_store(store)]


@app.command()
def backup(
    store: Annotated[str, typer.Argument(help="postgresql | clickhouse | redis | all")] = "all",
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR",
                                          help="Folder for the backups.")] = Path("backups"),
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT",
                                     help="PostgreSQL: custom | directory")] = "custom",
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N",
                                      help="Parallel pg_dump jobs (directory format).")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Back up one store, or all of them as one set, into folders with manifests.

    `backup all` writes one set (backups/set-<time>/): every store's part and the
    point in time each shows. A backup that fails leaves no folder behind.
    """
    if fmt not in ("custom", "directory"):
        raise ConfigError("--format must be custom or directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; name a folder for the backups")
    names = store_or_all(store)
    folders = stores.backup(endpoints(start=True, stores=names), names, out_dir,
                            directory_format=fmt == "directory", jobs=jobs)
    if as_json:
        print_json({"backups": [str(folder) for folder in folders]})
        return
    for folder in folders:
        show(f"backup written: {folder}")


@app.command()
def restore(
    store: Annotated[str, typer.Argument(help="postgresql | clickhouse | redis | all")],
    path: Annotated[Path, typer.Argument(help="A backup folder, or a folder of backups.")],
    force: Annotated[bool, typer.Option("--force", help="Write over a non-empty target.")] = False,
    verify: Annotated[bool, typer.Option("--verify",
                                         help="Compare counts and checksums after.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Restore from a backup; manifests and checksums are checked first.

    `restore all PATH` restores a set (PATH, or the newest set in it), all or nothing:
    every store is restored beside its target and verified, then all are switched in.
    """
    names = store_or_all(store)
    results = stores.restore(endpoints(start=True, stores=names), names, path, force=force,
                             verify=verify)
    if as_json:
        print_json([asdict(result) for result in results])
        return
    for result in results:
        table = Table("table", "rows", "matches manifest",
                      title=f"{result.store} -> {result.target}")
        bad = {m.split(":", 1)[0] for m in result.mismatches}
        for name, state in sorted(result.tables.items()):
            table.add_row(name, str(state.rows), "[red]no[/]" if name in bad else "[green]yes[/]")
        show(table)


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
    from platformdb import clickhouse
    from platformdb.clickhouse.sync import sync_daily

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
    found = endpoints(start=True, stores=["postgresql", "clickhouse"])
    with clickhouse.connect(open_store("clickhouse", found).require_url()) as client:
        report = sync_daily(client, postgres_url(found), first, last)
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


# ---------------------------------------------------------------------- seed

seed_app = typer.Typer(help="Load seed data: test, demo, load; or clear it.", no_args_is_help=True)
app.add_typer(seed_app, name="seed")


def show_seed(report: Any, as_json: bool = False) -> None:
    if as_json:
        print_json({"dataset": report.dataset, "counts": report.counts, "notes": report.notes})
        return
    table = Table("table", "rows", title=f"seed {report.dataset}")
    for name, count in report.counts.items():
        table.add_row(name, str(count))
    show(table)
    for note in report.notes:
        show(note)


def seed_settings() -> Settings:
    """Seeds write every store: start what is needed, then hand over the URLs."""
    return resolved_settings(endpoints(start=True))


@seed_app.command("test")
def seed_test(as_json: JsonOption = False) -> None:
    """The spec's test dataset (postgresql/seed/test_data.sql); idempotent."""
    from platformdb import seed

    show_seed(seed.seed_test(seed_settings()), as_json)


@seed_app.command("demo")
def seed_demo(
    seed_value: Annotated[int, typer.Option("--seed", metavar="N",
                                            help="Same seed, same data.")] = 2026,
    as_json: JsonOption = False,
) -> None:
    """A deterministic demo across PostgreSQL, ClickHouse and Redis (replaces an older one)."""
    from platformdb import seed

    show_seed(seed.seed_demo(seed_settings(), seed=seed_value), as_json)


@seed_app.command("load")
def seed_load(
    scale: Annotated[float, typer.Option("--scale", metavar="F",
                                         help="1 = 1,000 orgs, 10M PG / 50M CH rows.")] = 1.0,
    skip_clickhouse: Annotated[bool, typer.Option("--no-clickhouse",
                                                  help="PostgreSQL only.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The load-test dataset, streamed (COPY / Arrow batches), all or nothing."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from platformdb import seed

    config = seed_settings()
    shape = seed.load.plan(scale)
    totals = {"clickhouse raw": 0 if skip_clickhouse else shape.raw,
              "organizations": shape.orgs, "users": shape.users, "user_roles": shape.users,
              "dsp_connectors": shape.orgs, "campaigns": shape.campaigns,
              "campaign_metrics": shape.metrics}
    columns = (TextColumn("{task.description:<18}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.completed:>12,} rows"), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=as_json) as bar:
        tasks = {name: bar.add_task(name, total=total) for name, total in totals.items() if total}

        def tick(what: str, rows: int) -> None:
            bar.advance(tasks[what], rows)
            task = bar.tasks[tasks[what]]
            if task.speed:
                bar.update(tasks[what], description=f"{what} {task.speed:,.0f}/s")

        report = seed.seed_load(config, scale, progress=tick, clickhouse=not skip_clickhouse)
    show_seed(report, as_json)


@seed_app.command("clear")
def seed_clear(
    force: Annotated[bool, typer.Option("--force", help="Also on a database that does not "
                                                        "look like a development one.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove seed data from every store; schema and reference data stay."""
    from platformdb import seed

    show_seed(seed.clear(seed_settings(), force=force), as_json)


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
    from platformdb import partitions

    found = endpoints(start=True, stores=["postgresql"])
    created = partitions.ensure(postgres_url(found), months_ahead=months)
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
    from platformdb import clickhouse, partitions
    from platformdb.clickhouse.stats import ttl_state

    policy = {name: days for name, days in (("campaign_metrics", metrics_days),
                                             ("audit_logs", audit_days),
                                             ("auth_tokens", token_days)) if days is not None}
    found = endpoints(start=True, stores=["postgresql", "clickhouse"])
    report = partitions.apply_retention(postgres_url(found), policy, dry_run=dry_run)
    with clickhouse.connect(open_store("clickhouse", found).require_url()) as client:
        ttls = ttl_state(client)
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


@app.command()
def docs(
    check: Annotated[bool, typer.Option("--check",
                                        help="Fail if docs/SCHEMA.md is stale.")] = False,
    root_dir: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Regenerate docs/SCHEMA.md from a scratch database built by the migrations."""
    from platformdb import docs_gen
    from platformdb.lint import find_root

    repo = find_root(root_dir)
    found = endpoints(start=True, stores=["postgresql"])
    with docs_gen.scratch_database(postgres_url(found), repo / "postgresql" / "migrations") as url:
        text = docs_gen.generate_schema_md(
            url, docs_gen.clickhouse_tables_from_ddl(repo / "clickhouse"),
            repo / "redis" / "schemas")
        tables = docs_gen.table_ddl(url)
    target = repo / "docs" / "SCHEMA.md"
    changed = docs_gen.write_schema_md(text, target, check=check)
    renewed = docs_gen.write_table_ddl(tables, repo / "postgresql" / "schemas", check=check)
    if check:
        show(f"{target} and postgresql/schemas/ are up to date")
        return
    show(f"{target} {'written' if changed else 'unchanged'}; "
              f"postgresql/schemas/: {len(renewed)} file(s) written")


@app.command()
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Only report inside these.")] = None,
    check: Annotated[list[str] | None, typer.Option(
        "--check", "-c", help="Run only this check (repeatable).")] = None,
    root_dir: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
    as_json: JsonOption = False,
    fmt: Annotated[str, typer.Option("--format", help="text | json (json is for tools).")] = "text",
) -> None:
    """Lint SQL, Lua and Python: syntax, migration safety, injection, order, conventions."""
    from platformdb import lint as linter

    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    if root_dir is not None and not root_dir.is_dir():
        raise ConfigError(f"--root {root_dir} is not a folder")
    # An explicit --root is the tree to lint; otherwise walk up from the cwd.
    repo = root_dir.resolve() if root_dir is not None else linter.find_root()
    findings = linter.run_lint(repo, rules=check, paths=paths)
    if as_json or fmt == "json":
        print(linter.format_json(findings))
    else:
        sys.stdout.write(linter.format_text(findings))
    if linter.blocking(findings):
        raise CheckFailed(f"lint: {len(linter.blocking(findings))} problem(s)")


# ---------------------------------------------------------------------- main


def main() -> None:
    """Entry point: run the app, turning known errors into one line and an exit code.

    ``--debug`` adds the traceback; it never changes the exit code.
    """
    debug = "--debug" in sys.argv or os.environ.get("PLATFORMDB_DEBUG") == "1"
    try:
        app()
    except PlatformDBError as exc:
        fail(exc, exc.exit_code, with_advice(exc), debug)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # one line, not a traceback, for the unexpected too
        fail(exc, 2, f"{type(exc).__name__}: {exc} (rerun with --debug for details)", debug)


URL_VARIABLES = {"postgresql": "PLATFORMDB_POSTGRES_URL", "clickhouse": "PLATFORMDB_CLICKHOUSE_URL",
                 "redis": "PLATFORMDB_REDIS_URL"}


def with_advice(exc: PlatformDBError) -> str:
    """The error's message plus what to do about it on the command line."""
    message = str(exc)
    if isinstance(exc, FunctionsNotLoaded):
        return f"{message}: run `platformdb migrate up`"
    if isinstance(exc, StoreUnavailable):
        variable = URL_VARIABLES.get(exc.store or "", "the store's PLATFORMDB_*_URL")
        if isinstance(exc, Unavailable):
            return f"{message}; start it with `platformdb up`, or set {variable}"
        return f"{message}; check {variable}, or run `platformdb up` for the embedded stack"
    return message


def fail(exc: BaseException, code: int, message: str, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[red]error:[/] {escape(redact_text(one_line(message)))}", soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

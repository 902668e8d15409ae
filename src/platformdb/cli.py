"""The ``platformdb`` command: parse, call one library function, print.

Exit codes: 0 success, 1 a check that failed, 2 bad usage, configuration or an
unreachable server. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from platformdb import __version__, embedded, migrate
from platformdb.config import Settings, load_settings, mask_password
from platformdb.errors import CheckFailed, PlatformDBError

app = typer.Typer(
    help="Migrate, seed, back up, check and run the platform's PostgreSQL, ClickHouse and Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
migrate_app = typer.Typer(help="Apply and inspect schema migrations.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")

out = Console()
err = Console(stderr=True)

StoreOption = Annotated[
    list[str] | None,
    typer.Option("--store", "-s",
                 help="postgresql | clickhouse | redis (repeatable; default: every store)"),
]
ClusterOption = Annotated[
    str | None,
    typer.Option("--cluster", help="ClickHouse: render ON CLUSTER / Replicated / Distributed DDL "
                                   "for this cluster (or PLATFORMDB_CLICKHOUSE_CLUSTER)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run",
                                            help="Print what would run; change nothing.")]


_CLUSTER: list[str] = []


def settings() -> Settings:
    loaded = load_settings()
    if _CLUSTER:
        return replace(loaded, clickhouse_cluster=_CLUSTER[-1])
    return loaded


def print_json(value: Any) -> None:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(type(obj).__name__)

    out.print_json(json.dumps(value, default=default))


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if debug:
        os.environ["PLATFORMDB_DEBUG"] = "1"
    if version:
        out.print(__version__)
        raise typer.Exit()


# ------------------------------------------------------------ embedded stack


@app.command()
def up() -> None:
    """Start the embedded stack (PostgreSQL, Redis; chDB needs no server)."""
    states = embedded.up(settings().home)
    show_states(states)


@app.command()
def down() -> None:
    """Stop what `up` started, and nothing else."""
    stopped = embedded.down(settings().home)
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the embedded stack's services."""
    states = embedded.status(settings().home)
    if as_json:
        print_json([asdict(state) for state in states])
        return
    show_states(states)


@app.command()
def env() -> None:
    """Print `export` lines; `eval "$(platformdb env)"` points psql at the stack."""
    for line in embedded.env_lines(settings()):
        print(line)


def show_states(states: list[embedded.ServiceState]) -> None:
    table = Table("service", "state", "pid", "port", "url")
    for state in states:
        table.add_row(state.name, state.detail, str(state.pid or "-"), str(state.port or "-"),
                      mask_password(state.url) if state.url else "-")
    out.print(table)


# ---------------------------------------------------------------- migrations


def stores_or_all(stores: list[str] | None) -> list[str]:
    return [migrate.check_store(s) for s in stores] if stores else list(migrate.STORES)


def show_steps(steps: list[migrate.Step], dry_run: bool) -> None:
    if not steps:
        out.print("nothing to do: every migration is applied")
        return
    for step in steps:
        verb = "would apply" if dry_run and step.direction == "up" else (
            "would revert" if dry_run else ("applied" if step.direction == "up" else "reverted"))
        timing = f" ({step.duration_ms} ms)" if step.duration_ms is not None else ""
        out.print(f"{step.store}: {verb} {step.label}{timing}")


@migrate_app.command("up")
def migrate_up(
    store: StoreOption = None,
    to: Annotated[int | None, typer.Option("--to", help="Stop after this number.")] = None,
    dry_run: DryRunOption = False,
    cluster: ClusterOption = None,
) -> None:
    """Apply every pending migration."""
    if cluster:
        _CLUSTER.append(cluster)
    show_steps(migrate.apply_pending(settings(), stores_or_all(store), target=to,
                                     dry_run=dry_run), dry_run)


@migrate_app.command("down")
def migrate_down(
    store: Annotated[str, typer.Option("--store", "-s",
                                       help="The store to roll back.")] = "postgresql",
    dry_run: DryRunOption = False,
) -> None:
    """Revert the last applied migration through its .down.sql."""
    with migrate.open_migrator(migrate.check_store(store, numbered=True), settings()) as migrator:
        show_steps([migrator.down(dry_run=dry_run)], dry_run)


@migrate_app.command("run")
def migrate_run(
    number: Annotated[str, typer.Argument(help="The migration number, e.g. 001.")],
    store: Annotated[str, typer.Option("--store", "-s")] = "postgresql",
    dry_run: DryRunOption = False,
) -> None:
    """Apply exactly one migration (every earlier one must be applied)."""
    if not number.isdigit():
        raise typer.BadParameter(f"{number!r} is not a migration number like 001")
    with migrate.open_migrator(migrate.check_store(store, numbered=True), settings()) as migrator:
        show_steps([migrator.run(int(number), dry_run=dry_run)], dry_run)


@migrate_app.command("status")
def migrate_status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show each migration: applied, pending, edited or missing."""
    from platformdb.migrate import redis as redis_scripts

    report: dict[str, list[migrate.StatusRow]] = {}
    scripts: dict[str, list[redis_scripts.ScriptStatus]] = {}
    for name in stores_or_all(store):
        if name in migrate.SCRIPT_STORES:
            with redis_scripts.open_client(settings()) as client:
                scripts[name] = redis_scripts.status(client)
            continue
        with migrate.open_migrator(name, settings()) as migrator:
            report[name] = migrator.status()
    if as_json:
        print_json({**{name: [asdict(row) for row in rows] for name, rows in report.items()},
                    **{name: [asdict(row) for row in rows] for name, rows in scripts.items()}})
        return
    for name, rows in report.items():
        table = Table("version", "name", "state", "applied at", "ms", "by", title=name)
        for row in rows:
            style = {"applied": "green", "pending": "yellow"}.get(row.state, "red")
            table.add_row(f"{row.version:03d}", row.name, f"[{style}]{row.state}[/]",
                          row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-",
                          str(row.duration_ms) if row.duration_ms is not None else "-",
                          row.applied_by or "-")
        out.print(table)
    for name, script_rows in scripts.items():  # after the numbered stores, as `up` runs them
        table = Table("script", "version", "sha", "state", "loaded at", "by", title=name)
        for line in script_rows:
            style = {"loaded": "green", "pending": "yellow"}.get(line.state, "red")
            table.add_row(line.name, line.version, line.sha[:12], f"[{style}]{line.state}[/]",
                          line.loaded_at or "-", line.loaded_by or "-")
        out.print(table)


@migrate_app.command("verify")
def migrate_verify(store: StoreOption = None) -> None:
    """Check that files parse and that applied files are unchanged (exit 1 if not)."""
    from platformdb.migrate import redis as redis_scripts

    problems: list[str] = []
    for name in stores_or_all(store):
        if name in migrate.SCRIPT_STORES:
            with redis_scripts.open_client(settings()) as client:
                problems.extend(f"{name}: {problem}" for problem in redis_scripts.verify(client))
            continue
        with migrate.open_migrator(name, settings()) as migrator:
            problems.extend(f"{name}: {problem}" for problem in migrator.verify())
    if problems:
        for problem in problems[1:]:
            err.print(f"[red]error:[/] {problem}", highlight=False)
        raise CheckFailed(problems[0])
    out.print("ok: every applied migration matches its file")


@migrate_app.command("new")
def migrate_new(
    name: Annotated[str, typer.Argument(help="What the migration does, e.g. add_reports")],
    store: Annotated[str, typer.Option("--store", "-s")] = "postgresql",
) -> None:
    """Create the next numbered migration and its down file."""
    up_path, down_path = migrate.new_migration(store, name)
    out.print(f"created {up_path}\ncreated {down_path}")


# ---------------------------------------------------------------- operations


@app.command()
def health(as_json: JsonOption = False,
           store: StoreOption = None) -> None:
    """Check every store (SELECT 1 / SELECT 1 / PING) and its migrations; exit 1 if unhealthy."""
    from platformdb import health as checks

    results = checks.check(settings(), store)
    if as_json:
        print_json([asdict(r) for r in results])
    else:
        table = Table("store", "healthy", "latency ms", "target", "detail")
        for r in results:
            table.add_row(r.store, "[green]yes[/]" if r.healthy else "[red]no[/]",
                          f"{r.latency_ms:.2f}" if r.latency_ms is not None else "-",
                          r.target, r.detail)
        out.print(table)
    bad = [r for r in results if not r.healthy]
    if bad:
        raise CheckFailed(f"{bad[0].store}: {bad[0].detail}")


@app.command()
def stats(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Key metrics: connections, latency, sizes, hit ratios, replication lag, memory..."""
    from platformdb import stats as metrics

    found, errors = metrics.collect(settings(), store)
    if as_json:
        print_json({"metrics": [asdict(m) for m in found], "errors": errors})
        return
    table = Table("store", "metric", "labels", "value", "unit")
    for m in found:
        labels = ",".join(f"{k}={v}" for k, v in sorted(m.labels.items()))
        table.add_row(m.store, m.name, labels or "-", f"{m.value:,.4g}", m.unit or "-")
    out.print(table)
    for line in errors:
        err.print(f"[yellow]warning:[/] {line}", highlight=False)


@app.command()
def exporter(
    port: Annotated[int, typer.Option("--port", help="Port to serve /metrics on.")] = 9187,
    addr: Annotated[str, typer.Option("--addr", help="Address to bind.")] = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="Print one scrape and exit.")] = False,
) -> None:
    """Serve the key metrics in Prometheus text format."""
    from platformdb import exporter as prom

    if once:
        print(prom.render(settings()), end="")
        return
    out.print(f"serving metrics on http://{addr}:{port}/metrics")
    prom.serve(settings(), port, addr)


@app.command()
def backup(
    store: Annotated[str, typer.Argument(help="postgresql | clickhouse | redis | all")] = "all",
    out_dir: Annotated[Path, typer.Option("--out",
                                          help="Folder for the backups.")] = Path("backups"),
    fmt: Annotated[str, typer.Option("--format", help="PostgreSQL: custom | directory")] = "custom",
    jobs: Annotated[int, typer.Option("--jobs", "-j",
                                      help="Parallel pg_dump jobs (directory format).")] = 1,
) -> None:
    """Back up one store or all of them into folders with manifests."""
    from platformdb import backup as backups

    if fmt not in ("custom", "directory"):
        raise typer.BadParameter("--format must be custom or directory")
    for folder in backups.backup(settings(), store, out_dir, directory_format=fmt == "directory",
                                 jobs=jobs):
        out.print(f"backup written: {folder}")


@app.command()
def restore(
    store: Annotated[str, typer.Argument(help="postgresql | clickhouse | redis | all")],
    path: Annotated[Path, typer.Argument(help="A backup folder, or a folder of backups.")],
    force: Annotated[bool, typer.Option("--force", help="Write over a non-empty target.")] = False,
    verify: Annotated[bool, typer.Option("--verify",
                                         help="Compare counts and checksums after.")] = False,
) -> None:
    """Restore from a backup; manifests and checksums are checked first."""
    from platformdb import backup as backups

    for result in backups.restore(settings(), store, path, force=force, verify=verify):
        table = Table("table", "rows", "matches manifest",
                      title=f"{result.store} -> {result.target}")
        bad = {m.split(":", 1)[0] for m in result.mismatches}
        for name, state in sorted(result.tables.items()):
            table.add_row(name, str(state.rows), "[red]no[/]" if name in bad else "[green]yes[/]")
        out.print(table)


# ---------------------------------------------------------------------- ETL

etl_app = typer.Typer(help="Move data between the stores.", no_args_is_help=True)
app.add_typer(etl_app, name="etl")


def parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} {value!r} is not a date like 2026-01-31") from exc


@etl_app.command("sync-daily")
def etl_sync_daily(
    day: Annotated[str | None, typer.Option("--date",
                                            help="One day (default: yesterday, UTC).")] = None,
    start: Annotated[str | None, typer.Option("--from", help="First day of a range.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day of a range.")] = None,
) -> None:
    """Copy ClickHouse daily totals into PostgreSQL campaign_metrics (idempotent)."""
    from platformdb import clickhouse
    from platformdb.clickhouse.sync import sync_daily

    if day and (start or end):
        raise typer.BadParameter("give --date or --from/--to, not both")
    if bool(start) != bool(end):
        raise typer.BadParameter("--from and --to go together")
    if day:
        first = last = parse_day(day, "--date")
    elif start and end:
        first, last = parse_day(start, "--from"), parse_day(end, "--to")
    else:
        first = last = datetime.now(UTC).date() - timedelta(days=1)
    config = embedded.resolve(settings(), postgres=True)
    assert config.postgres_url is not None
    with clickhouse.connect(config) as client:
        report = sync_daily(client, config.postgres_url, first, last)
    out.print(f"sync-daily {report.start}..{report.end}: read {report.read} ClickHouse rows, "
              f"wrote {report.written}, deleted {report.deleted}, skipped "
              f"{report.skipped_unknown_campaigns} (unknown campaigns), {report.orgs} org(s), "
              f"{report.duration_ms} ms")


# ---------------------------------------------------------------------- seed

seed_app = typer.Typer(help="Load seed data: test, demo, load; or clear it.", no_args_is_help=True)
app.add_typer(seed_app, name="seed")


def show_seed(report: Any) -> None:
    table = Table("table", "rows", title=f"seed {report.dataset}")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}")
    out.print(table)
    for note in report.notes:
        out.print(note)


@seed_app.command("test")
def seed_test() -> None:
    """The spec's test dataset (postgresql/seed/test_data.sql); idempotent."""
    from platformdb import seed

    show_seed(seed.seed_test(settings()))


@seed_app.command("demo")
def seed_demo(
    seed_value: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 2026,
) -> None:
    """A deterministic demo across PostgreSQL, ClickHouse and Redis (replaces an older one)."""
    from platformdb import seed

    show_seed(seed.seed_demo(settings(), seed=seed_value))


@seed_app.command("load")
def seed_load(
    scale: Annotated[float, typer.Option("--scale",
                                         help="1 = 1,000 orgs, 10M PG / 50M CH rows.")] = 1.0,
    skip_clickhouse: Annotated[bool, typer.Option("--no-clickhouse",
                                                  help="PostgreSQL only.")] = False,
) -> None:
    """The load-test dataset, streamed (COPY / Arrow batches), all or nothing."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from platformdb import seed

    shape = seed.load.plan(scale)
    totals = {"clickhouse raw": 0 if skip_clickhouse else shape.raw,
              "organizations": shape.orgs, "users": shape.users, "user_roles": shape.users,
              "dsp_connectors": shape.orgs, "campaigns": shape.campaigns,
              "campaign_metrics": shape.metrics}
    columns = (TextColumn("{task.description:<18}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.completed:>12,} rows"), TimeElapsedColumn())
    with Progress(*columns, console=out) as bar:
        tasks = {name: bar.add_task(name, total=total) for name, total in totals.items() if total}

        def tick(what: str, rows: int) -> None:
            bar.advance(tasks[what], rows)
            task = bar.tasks[tasks[what]]
            if task.speed:
                bar.update(tasks[what], description=f"{what} {task.speed:,.0f}/s")

        report = seed.seed_load(settings(), scale, progress=tick,
                                clickhouse=not skip_clickhouse)
    show_seed(report)


@seed_app.command("clear")
def seed_clear(
    force: Annotated[bool, typer.Option("--force", help="Also on a database that does not "
                                                        "look like a development one.")] = False,
) -> None:
    """Remove seed data from every store; schema and reference data stay."""
    from platformdb import seed

    show_seed(seed.clear(settings(), force=force))


# ------------------------------------------------------------- maintenance

partitions_app = typer.Typer(help="Date partitions of campaign_metrics and audit_logs.",
                             no_args_is_help=True)
app.add_typer(partitions_app, name="partitions")
retention_app = typer.Typer(help="Drop data past its retention window.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


def postgres_url() -> str:
    url = embedded.resolve(settings(), postgres=True).postgres_url
    assert url is not None
    return url


@partitions_app.command("ensure")
def partitions_ensure(
    months: Annotated[int, typer.Option("--months", help="Months ahead of this one.")] = 3,
) -> None:
    """Create this month's partitions and the next ones (idempotent; run it from cron)."""
    from platformdb import partitions

    for table, created in partitions.ensure(postgres_url(), months_ahead=months).items():
        out.print(f"{table}: {created} new monthly partition(s)")


@retention_app.command("apply")
def retention_apply(
    metrics_days: Annotated[int | None, typer.Option("--metrics-days")] = None,
    audit_days: Annotated[int | None, typer.Option("--audit-days")] = None,
    token_days: Annotated[int | None, typer.Option("--token-days")] = None,
    dry_run: DryRunOption = False,
) -> None:
    """Drop months of campaign_metrics / audit_logs past retention; purge dead tokens."""
    from platformdb import partitions

    policy = {name: days for name, days in (("campaign_metrics", metrics_days),
                                             ("audit_logs", audit_days),
                                             ("auth_tokens", token_days)) if days is not None}
    report = partitions.apply_retention(postgres_url(), policy, dry_run=dry_run)
    verb = "would drop" if dry_run else "dropped"
    for table, names in report.dropped_partitions.items():
        out.print(f"{table}: {verb} {len(names)} partition(s) before {report.cutoffs[table]}"
                  + (f": {', '.join(names)}" if names else ""))
    if not dry_run:
        out.print(f"auth_tokens: deleted {report.deleted_tokens} expired or revoked token(s)")
    from platformdb import clickhouse
    from platformdb.clickhouse.stats import ttl_state

    with clickhouse.connect(settings()) as client:
        for table, ttl in ttl_state(client).items():
            out.print(f"clickhouse {table}: TTL {ttl} (expired rows go in background merges)")


# ------------------------------------------------------------------ secrets

secrets_app = typer.Typer(help="Encrypted secrets (DSP credentials) and their keys.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def secrets_rotate(
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per transaction.")] = 500,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt every DSP credential under the first key of PLATFORMDB_SECRET_KEYS."""
    from platformdb import secrets  # the only module that imports cryptography
    from platformdb.config import read_dotenv

    keys = secrets.KeyRing.from_environment({**read_dotenv(Path.cwd() / ".env"), **os.environ})
    report = secrets.rotate_dsp_credentials(postgres_url(), keys, batch_size=batch_size,
                                            dry_run=dry_run)
    if as_json:
        print_json(asdict(report))
    else:
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        out.print(f"dsp_connectors: {verb} {report.rotated} credential(s) under key "
                  f"{report.active_key_id} in {report.batches} batch(es)")
        for failure in report.failed:
            err.print(f"not rotated: {failure}", highlight=False, soft_wrap=True)
    if report.failed:
        raise CheckFailed(f"secrets rotate: {len(report.failed)} credential(s) could not be "
                          "decrypted with the configured keys")


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
    with docs_gen.scratch_database(postgres_url(), repo / "postgresql" / "migrations") as url:
        text = docs_gen.generate_schema_md(
            url, docs_gen.clickhouse_tables_from_ddl(repo / "clickhouse"),
            repo / "redis" / "schemas")
        tables = docs_gen.table_ddl(url)
    target = repo / "docs" / "SCHEMA.md"
    changed = docs_gen.write_schema_md(text, target, check=check)
    renewed = docs_gen.write_table_ddl(tables, repo / "postgresql" / "schemas", check=check)
    if check:
        out.print(f"{target} and postgresql/schemas/ are up to date")
        return
    out.print(f"{target} {'written' if changed else 'unchanged'}; "
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
        raise typer.BadParameter(f"--format must be text or json, not {fmt!r}")
    if root_dir is not None and not root_dir.is_dir():
        raise typer.BadParameter(f"--root {root_dir} is not a folder")
    # An explicit --root is the tree to lint; otherwise walk up from the cwd.
    repo = root_dir.resolve() if root_dir is not None else linter.find_root()
    findings = linter.run_lint(repo, rules=check, paths=paths)
    if as_json or fmt == "json":
        print(linter.format_json(findings))
    else:
        out.print(linter.format_text(findings), highlight=False, soft_wrap=True, end="")
    if linter.blocking(findings):
        raise CheckFailed(f"lint: {len(linter.blocking(findings))} problem(s)")


# ---------------------------------------------------------------------- main


def main() -> None:
    """Entry point: run the app, turning known errors into one line and an exit code."""
    debug = "--debug" in sys.argv or os.environ.get("PLATFORMDB_DEBUG") == "1"
    try:
        app()
    except PlatformDBError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # one line, not a traceback, for the unexpected too
        if debug:
            raise
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc} (rerun with --debug for details)",
                  highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

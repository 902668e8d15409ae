"""`platformdb health | stats | exporter | backup | restore`: operations."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from platformdb.cli.base import (
    STORES,
    JsonOption,
    StoreOption,
    app,
    complete_store_or_all,
    context,
    number,
    print_json,
    show,
    store_or_all,
)
from platformdb.errors import CheckFailed, ConfigError, Hint
from platformdb.ops import backup as backups
from platformdb.ops import drill
from platformdb.ops import health as checks
from platformdb.ops import stats as metrics
from platformdb.ops.stats import StatsConfig

BackupDirOption = Annotated[
    Path | None,
    typer.Option("--backup-dir", metavar="DIR", envvar="PLATFORMDB_BACKUP_DIR",
                 help="Where `platformdb backup` writes: report the age of the last good "
                      "backup per store."),
]
RedisPrefixOption = Annotated[
    str, typer.Option("--redis-prefix", metavar="PREFIX", envvar="PLATFORMDB_REDIS_PREFIX",
                      help="The deployment's Redis key prefix.")]
QueueOption = Annotated[
    list[str] | None,
    typer.Option("--queue", metavar="JOB_TYPE",
                 help="Report this job queue (repeatable; default: every queue found).")]
ScanIntervalOption = Annotated[
    float, typer.Option("--scan-interval", metavar="SECONDS",
                        help="Walk the Redis keyspace (live sessions, finding queues) at most "
                             "this often.")]
TenantTopOption = Annotated[
    int, typer.Option("--tenant-top", metavar="N", envvar="PLATFORMDB_TENANT_TOP",
                      help="Per-tenant usage: series for the N largest orgs, the rest summed "
                           "as org=_other.")]


def complete_backup(incomplete: str) -> list[str]:
    """Shell completion: backup sets, store backups, archives and dumps (under backups/ when
    nothing is typed yet), and folders to look into."""
    return backups.candidates(incomplete)


def stats_config(backup_dir: Path | None, redis_prefix: str, queues: list[str] | None,
                 scan_interval: float, tenant_top: int = 20) -> StatsConfig:
    if backup_dir is not None and not backup_dir.is_dir():
        raise ConfigError(f"--backup-dir {backup_dir} is not a folder")
    if scan_interval < 0:
        raise ConfigError("--scan-interval must be 0 or more seconds")
    if tenant_top < 0:
        raise ConfigError("--tenant-top must be 0 or more")
    return StatsConfig(backup_dir=backup_dir, redis_prefix=redis_prefix,
                       queues=tuple(queues or ()), scan_interval=scan_interval,
                       tenant_top=tenant_top)


@app.command()
def health(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """Check every store (SELECT 1 / SELECT 1 / PING) and its migrations; exit 1 if unhealthy.

    PostgreSQL's detail names its replicas and their lag; PgBouncer, when one pools
    PostgreSQL (the embedded stack's, or PLATFORMDB_PGBOUNCER_URL), gets its own row.
    Never starts anything: a store whose embedded server is down is reported down.
    """
    results = checks.check(context(start=False, stores=store), store)
    if as_json:
        print_json([asdict(r) for r in results])
    else:
        table = Table("store", "healthy", "latency ms", "target", "detail")
        for column in (table.columns[3], table.columns[4]):
            column.overflow = "fold"  # a narrow terminal wraps a long detail; it never cuts it
        for r in results:
            table.add_row(r.store, "[green]yes[/]" if r.healthy else "[red]no[/]",
                          f"{r.latency_ms:.2f}" if r.latency_ms is not None else "-",
                          escape(r.target), escape(r.detail))
        show(table)
    bad = [r for r in results if not r.healthy]
    if bad:
        down = any(r.latency_ms is None and "embedded" in r.target for r in bad)
        raise CheckFailed(f"{bad[0].store}: {bad[0].detail}",
                          hint=Hint(command="platformdb up", does="to start the embedded stack")
                          if down else None)


@app.command()
def stats(as_json: JsonOption = False, store: StoreOption = None,
          backup_dir: BackupDirOption = None, redis_prefix: RedisPrefixOption = "",
          queue: QueueOption = None, scan_interval: ScanIntervalOption = 0.0,
          tenant_top: TenantTopOption = 20) -> None:
    """Key metrics of each store, and the platform's own (migrations, backups...); exit 1
    when a store or source could not be read.

    Stores: connections, latency, sizes, hit ratios, replication, memory. The platform:
    migrations, last good backup (--backup-dir), sync-daily lag, partitions ahead, queues,
    rate-limit decisions, cache hit ratio, live sessions, PgBouncer pools, the largest
    tenants' rows, bytes and keys (--tenant-top). Never starts anything.
    """
    config = stats_config(backup_dir, redis_prefix, queue, scan_interval, tenant_top)
    found, errors = metrics.collect(context(start=False, stores=store), store, config)
    if as_json:
        print_json({"metrics": [asdict(m) for m in found], "errors": errors})
    else:
        table = Table("store", "metric", "labels", "value", "unit")
        for m in found:
            labels = ",".join(f"{k}={v}" for k, v in sorted(m.labels.items()))
            table.add_row(m.store, m.name, escape(labels) or "-", number(m.value),
                          m.unit or "-")
        show(table)
    if errors:
        down = any("not running" in line or "no embedded stack" in line for line in errors)
        raise CheckFailed("; ".join(errors),
                          hint=Hint(command="platformdb up", does="to start the embedded stack")
                          if down else None)


@app.command()
def exporter(
    port: Annotated[int, typer.Option(
        "--port", metavar="PORT",
        help="Port to serve /metrics on (not 9187: postgres_exporter's).")] = 9198,
    addr: Annotated[str, typer.Option("--addr", metavar="ADDR", help="Address to bind.")]
        = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="Print one scrape and exit.")] = False,
    backup_dir: BackupDirOption = None,
    redis_prefix: RedisPrefixOption = "",
    queue: QueueOption = None,
    scan_interval: ScanIntervalOption = 60.0,
    tenant_top: TenantTopOption = 20,
) -> None:
    """Serve the metrics of `platformdb stats` in Prometheus text format (docs/OPERATIONS.md)."""
    from platformdb.ops import exporter as prom  # prometheus_client: only this command

    config = stats_config(backup_dir, redis_prefix, queue, scan_interval, tenant_top)
    found = context(start=False)
    if once:
        print(prom.render(found, config), end="")
        return
    prom.serve(found, port, addr, config, ready=lambda url: show(f"serving metrics on {url}"))


@app.command()
def backup(
    store: Annotated[str, typer.Argument(help=f"{STORES} | all | verify",
                                         autocompletion=complete_store_or_all)] = "all",
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR",
                                          help="Folder for the backups.")] = Path("backups"),
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT",
                                     help="PostgreSQL: custom | directory")] = "custom",
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N",
                                      help="Parallel pg_dump jobs (directory format).")] = 1,
    archive: Annotated[bool, typer.Option(
        "--archive", help="Write each backup as one .tar file instead of a folder.")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify", help="`backup all`: run the restore drill on the new set and record it "
                         "as good only if it passes.")] = False,
    set_path: Annotated[Path | None, typer.Argument(
        metavar="[SET]", help="`backup verify`: the set (default: the newest in --out).",
        autocompletion=complete_backup)] = None,
    as_json: JsonOption = False,
) -> None:
    """Back up one store, or all of them as one set, into folders with manifests.

    `backup verify [SET]` is the restore drill: the set (default: the newest under
    --out) is restored into scratch targets only, checked there (counts, checksums,
    schema drift, rollups = raw, queue invariants) and dropped; the outcome and its
    duration are recorded in DIR/platformdb-verified.json for the exporter. Exit 1 when
    the drill fails.

    `backup all` writes one set (backups/set-<time>/): every store's part and the
    point in time each shows. A backup that fails leaves no folder behind. Each
    backup is checked against its manifest and recorded in DIR/platformdb-backups.json
    as its store's last good one (the exporter's backup age: --backup-dir DIR).
    """
    if fmt not in ("custom", "directory"):
        raise ConfigError("--format must be custom or directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; name a folder for the backups")
    if store == "verify":
        drilled = drill.verify_set(context(start=True), set_path or out_dir)
        if as_json:
            print_json(drilled.as_dict())
        else:
            show(f"backup verify {drilled.set}: "
                 + ("ok" if drilled.ok else f"FAILED: {drilled.reason}")
                 + f" ({drilled.seconds:.1f} s)")
            for note in drilled.notes:
                show(f"  note: {note}")
        if not drilled.ok:
            raise typer.Exit(1)
        return
    if set_path is not None:
        raise ConfigError(f"unexpected argument {set_path}: only `backup verify` takes a SET")
    names = store_or_all(store)
    folders = backups.backup(context(start=True, stores=names), names, out_dir,
                             archive=archive, check=drill.required if verify else None,
                             directory_format=fmt == "directory", jobs=jobs)
    if as_json:
        print_json({"backups": [str(folder) for folder in folders]})
        return
    for folder in folders:
        show(f"backup written: {folder}")


@app.command()
def restore(
    store: Annotated[str, typer.Argument(help=f"{STORES} | all",
                                         autocompletion=complete_store_or_all)],
    path: Annotated[Path, typer.Argument(
        help="A backup folder, a folder of backups, a .tar from `backup --archive`, or for "
             "postgresql a pg_dump file (plain SQL or custom format).",
        autocompletion=complete_backup)],
    force: Annotated[bool, typer.Option("--force", help="Write over a non-empty target.")] = False,
    verify: Annotated[bool, typer.Option("--verify",
                                         help="Compare counts and checksums after.")] = False,
    force_older_schema: Annotated[bool, typer.Option(
        "--force-older-schema",
        help="Restore a backup whose migration ledger is behind the target's (or empty), "
             "then migrate it up to the current head.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Restore from a backup; manifests and checksums are checked first.

    A backup whose migrations are behind the target's is refused unless
    --force-older-schema. A restore killed midway is finished or rolled back by the next
    `restore`, `recover` or `up`.

    `restore all PATH` restores a set (PATH, or the newest set in it), all or nothing:
    every store is restored beside its target and verified, then all are switched in.
    A pg_dump file (`pg_dump > backup.sql`, `pg_dump -Fc`) restores the same way: into a
    scratch database in one transaction, checked (it holds the migration ledger), then
    switched in.
    """
    names = store_or_all(store)
    compared = backups.has_manifest(path)
    results = backups.restore(context(start=True, stores=names), names, path, force=force,
                              verify=verify, force_older_schema=force_older_schema)
    if as_json:
        print_json([asdict(result) for result in results])
        return
    for result in results:
        table = Table("table", "rows", "matches manifest",
                      title=f"{result.store} -> {result.target}")
        bad = {m.split(":", 1)[0] for m in result.mismatches}
        for name, state in sorted(result.tables.items()):
            verdict = ("-" if not compared else "[red]no[/]" if name in bad else "[green]yes[/]")
            table.add_row(name, str(state.rows), verdict)
        show(table)
        if not compared:
            show("(a pg_dump file has no manifest: row counts as restored)")


@app.command()
def recover(
    cleanup: Annotated[bool, typer.Option(
        "--cleanup", help="Also remove leftovers no journal names (scratch and aside "
                          "databases, staging keys), found by their names.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Finish or roll back a restore a crash interrupted: every store all-old or all-new.

    A restore writes its intent to $PLATFORMDB_HOME/journal/ before each step. Killed
    before it switched anything, it is rolled back (scratch copies dropped); killed while
    switching or committing, it is finished. `restore` and `up` do this first by
    themselves; `platformdb health` lists what is left.
    """
    done = backups.recover(context(start=True), cleanup=cleanup)
    if as_json:
        print_json(asdict(done))
        return
    for operation in done.operations:
        stores = ", ".join(f"{name}: {what}" for name, what in operation["stores"].items())
        show(f"{operation['operation']} {operation['id']} (stopped while {operation['phase']}): "
             f"{operation['action']}" + (f" -- {stores}" if stores else ""))
    for store, names in done.removed.items():
        show(f"{store}: removed {', '.join(names)}")
    for waiting in done.waiting:
        show(f"not recovered yet: {waiting}")
    if not done.operations and not done.removed and not done.waiting:
        show("nothing to recover")

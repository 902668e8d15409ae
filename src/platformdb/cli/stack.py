"""`platformdb up | down | status | env | pgbouncer`: the embedded stack, and PgBouncer."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from platformdb.cli.base import (
    JsonOption,
    app,
    context,
    print_json,
    settings,
    show,
)
from platformdb.errors import ConfigError
from platformdb.ops import stack
from platformdb.ops.stack import SERVICES, PoolSettings, ServiceState
from platformdb.redaction import redact

# ------------------------------------------------------------ embedded stack


@app.command()
def up(as_json: JsonOption = False) -> None:
    """Start the embedded stack (PostgreSQL, Redis; chDB needs no server).

    With a pgbouncer binary installed (apt-get install pgbouncer), PgBouncer runs in
    front of PostgreSQL too, with one login per service (`platformdb pgbouncer config`).
    """
    show_states(stack.up(settings()), as_json)


@app.command()
def down(as_json: JsonOption = False) -> None:
    """Stop what `up` started, and nothing else."""
    stopped = stack.down(settings())
    if as_json:
        print_json({"stopped": stopped})
        return
    show(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the embedded stack's services; starts nothing."""
    show_states(stack.status(settings()), as_json)


@app.command()
def env() -> None:
    """Print `export` lines: `eval "$(platformdb env)"` points psql, redis-cli and
    clickhouse-client at the stack. Starts nothing.

    PostgreSQL's password goes in a passfile (PGPASSFILE, owner-only), never in the
    environment; $PLATFORMDB_HOME/bin, first on PATH, holds redis-cli and valkey-cli
    for the stack's Redis and a clickhouse-client (--query) over its ClickHouse.
    """
    for line in stack.env(settings()):
        print(line)


def show_states(states: list[ServiceState], as_json: bool) -> None:
    if as_json:
        print_json([{**asdict(state), "url": redact(state.url) if state.url else None}
                    for state in states])
        return
    table = Table("service", "state", "pid", "port", "url")
    for state in states:
        table.add_row(state.name, state.detail, str(state.pid or "-"), str(state.port or "-"),
                      redact(state.url) if state.url else "-")
    show(table)


# ------------------------------------------------------------------ PgBouncer

pgbouncer_app = typer.Typer(
    help="PgBouncer for the platform: transaction pooling, one login per service.",
    no_args_is_help=True)
app.add_typer(pgbouncer_app, name="pgbouncer")

OutOption = Annotated[Path | None, typer.Option(
    "--out", metavar="DIR", help="Write the file(s) into DIR instead of printing.")]


@pgbouncer_app.command("config")
def pgbouncer_config(
    port: Annotated[int, typer.Option("--port", metavar="PORT",
                                      help="Port PgBouncer listens on.")] = 6432,
    listen: Annotated[str, typer.Option("--listen", metavar="ADDR",
                                        help="Address PgBouncer listens on.")] = "127.0.0.1",
    pool_size: Annotated[int, typer.Option("--pool-size", metavar="N",
                                           help="Server connections per service login and "
                                                "database.")] = 20,
    max_db_connections: Annotated[int, typer.Option(
        "--max-db-connections", metavar="N",
        help="Server connections per database, all logins (below max_connections).")] = 80,
    max_client_conn: Annotated[int, typer.Option("--max-client-conn", metavar="N",
                                                 help="Clients PgBouncer accepts.")] = 1000,
    out_dir: OutOption = None,
) -> None:
    """Print pgbouncer.ini for the configured PostgreSQL (the embedded one by default).

    Transaction pooling, SCRAM auth from userlist.txt (`platformdb pgbouncer logins`
    writes it), no server_reset_query. Behind it services set the tenant in every
    transaction and keep no session state (docs/OPERATIONS.md#pgbouncer).
    """
    for name, value in (("--pool-size", pool_size), ("--max-db-connections",
                                                     max_db_connections),
                        ("--max-client-conn", max_client_conn), ("--port", port)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1")
    text = stack.pgbouncer_config(
        context(start=False, stores=["postgresql"]), PoolSettings(
            listen_addr=listen, listen_port=port, default_pool_size=pool_size,
            max_db_connections=max_db_connections, max_client_conn=max_client_conn))
    if out_dir is None:
        print(text, end="")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pgbouncer.ini").write_text(text)
    show(f"written: {out_dir / 'pgbouncer.ini'}")


@pgbouncer_app.command("logins")
def pgbouncer_logins(out_dir: OutOption = None, as_json: JsonOption = False) -> None:
    """Create (or refresh) one PostgreSQL login per service and PgBouncer's auth_file.

    svc_api (platform_app), svc_auth (platform_auth), svc_etl (platform_etl),
    svc_reporting (platform_readonly), svc_connector (platform_connector): passwords
    generated once and kept 0600 in $PLATFORMDB_HOME/secrets/; the server and the
    auth_file get their SCRAM secrets only. Needs a role that may create roles.
    """
    done = stack.pgbouncer_logins(context(start=True, stores=["postgresql"]), out_dir)
    listing = {login: str(path) for login, path in done.password_files.items()}
    if as_json:
        print_json({"logins": listing, "auth_file": str(done.auth_file)
                    if done.auth_file else None})
        return
    table = Table("login", "role", "password kept in")
    for login, path in listing.items():
        table.add_row(login, SERVICES.get(login, "(admin console only)"), path)
    show(table)
    if done.auth_file is not None:
        show(f"auth_file written: {done.auth_file} (0600)")

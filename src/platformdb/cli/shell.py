"""`platformdb shell | query`: a client for every store, embedded included."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from platformdb import clickhouse
from platformdb.cli.base import app, endpoints, out, print_json, settings, show
from platformdb.errors import ConfigError
from platformdb.redaction import redact_text
from platformdb.stores import open_store
from platformdb.stores.clickhouse import console
from platformdb.types import check_store

StoreArgument = Annotated[str, typer.Argument(help="postgresql | clickhouse | redis")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def shell(
    store: StoreArgument,
    args: Annotated[list[str] | None, typer.Argument(
        help="More arguments for psql / valkey-cli (after --).")] = None,
) -> None:
    """Open the store's client on the configured server (the embedded stack's by default).

    postgresql: psql; clickhouse: a SQL prompt (\\q quits, ; ends a statement), on a
    server or on chDB; redis: valkey-cli (or redis-cli). Passwords never go on the
    command line. Piped input runs as a script: `echo 'SELECT 1;' | platformdb shell clickhouse`.
    On chDB the prompt holds the path: other commands wait until you quit.
    """
    name = check_store(store)
    found = endpoints(start=True, stores=[name])
    url = open_store(name, found).require_url()
    if name == "clickhouse":
        if args:
            raise ConfigError("the ClickHouse prompt takes no extra arguments")
        raise typer.Exit(clickhouse_shell(url, settings().home))
    if name == "postgresql":
        with console.psql_command(url, args or []) as program:
            raise typer.Exit(run_program(program))
    raise typer.Exit(run_program(console.redis_cli_command(url, args or [])))


def run_program(program: console.Program) -> int:
    """Run a client program on this terminal; Ctrl-C goes to it, not to us."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            return subprocess.run(program.args, env=program.env, check=False).returncode
        except FileNotFoundError as exc:
            raise ConfigError(f"{program.args[0]} is not installed") from exc
    finally:
        signal.signal(signal.SIGINT, previous)


def clickhouse_shell(url: str, home: Path) -> int:
    with clickhouse.connect(url) as client:
        prompt = console.ClickHouseConsole(client, history=home / "clickhouse_history")
        if not sys.stdin.isatty():
            return prompt.run_script(sys.stdin.read())
        return prompt.interact()


@app.command()
def query(
    store: StoreArgument,
    statement: Annotated[str, typer.Argument(
        help="SQL for postgresql / clickhouse; a command line for redis (GET key).")],
    fmt: Annotated[str | None, typer.Option(
        "--format", metavar="FORMAT",
        help="table | csv | json (default: table on a terminal, csv when piped).")] = None,
) -> None:
    """Run one statement and print its result; it takes effect at once (autocommit)."""
    name = check_store(store)
    chosen = fmt or ("table" if sys.stdout.isatty() else "csv")
    if chosen not in console.FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(console.FORMATS)}")
    found = endpoints(start=True, stores=[name])
    result = console.run_query(name, open_store(name, found).require_url(), statement)
    if chosen == "json":
        print_json(console.json_value(result))
    elif chosen == "csv":
        sys.stdout.write(redact_text(console.as_csv(result)))
    else:
        show(console.as_table(result))
        if result.columns and out.is_terminal:
            show(f"[dim]({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})[/]")

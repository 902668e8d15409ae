"""`platformdb shell | query`: a client for every store, embedded included."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from platformdb.cli.base import STORES, app, complete_store, context, out, print_json, show
from platformdb.errors import ConfigError
from platformdb.ops import query as queries
from platformdb.redaction import redact_text
from platformdb.render import FORMATS, as_csv, as_table, as_tsv, json_value

StoreArgument = Annotated[str, typer.Argument(help=STORES, autocompletion=complete_store)]


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
    raise typer.Exit(queries.shell(context(start=True, stores=[store]), store, args or []))


@app.command()
def query(
    store: StoreArgument,
    statement: Annotated[str, typer.Argument(
        help="SQL for postgresql / clickhouse; a command line for redis (GET key).")],
    fmt: Annotated[str | None, typer.Option(
        "--format", metavar="FORMAT",
        help="table | csv | json | tsv (default: table on a terminal, csv when piped; tsv: "
             "no header, as clickhouse-client prints).")] = None,
) -> None:
    """Run one statement and print its result; it takes effect at once (autocommit).

    A text with several statements is refused: `platformdb shell STORE` runs scripts. A
    missing Redis key prints as (nil).
    """
    chosen = fmt or ("table" if sys.stdout.isatty() else "csv")
    if chosen not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}")
    result = queries.query(context(start=True, stores=[store]), store, statement)
    if chosen == "json":
        print_json(json_value(result))
    elif chosen == "csv":
        sys.stdout.write(redact_text(as_csv(result)))
    elif chosen == "tsv":
        sys.stdout.write(redact_text(as_tsv(result)))
    else:
        show(as_table(result))
        if result.columns and out.is_terminal:
            show(f"[dim]({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})[/]")

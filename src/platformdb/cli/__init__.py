"""The ``platformdb`` command: parse, call one library function, print.

One module per command group (:mod:`.stack`, :mod:`.migrations`, :mod:`.ops`,
:mod:`.etl`, :mod:`.seed`, :mod:`.maintenance`, :mod:`.tenant`, :mod:`.dev`), all registered on
the one Typer :data:`app` of :mod:`.base`. Exit codes: 0 success, 1 a check that
failed, 2 bad usage, configuration or an unreachable server. Errors are one
line; ``--debug`` adds the traceback and never changes the exit code.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from psycopg.errors import UndefinedTable
from rich.markup import escape

from platformdb import __version__
from platformdb.cli import (
    dev,
    etl,
    maintenance,
    migrations,
    ops,
    secrets,
    seed,
    shell,
    stack,
    tenant,
)
from platformdb.cli.base import app, err
from platformdb.errors import Hint, PlatformDBError, StoreUnavailable, Unavailable, one_line
from platformdb.ops.context import url_variable
from platformdb.redaction import redact_text

__all__ = ["app", "dev", "etl", "main", "maintenance", "migrations", "ops", "secrets", "seed",
           "shell", "stack", "tenant"]


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
    except UndefinedTable as exc:  # a command that needs the platform's schema, before it
        fail(exc, 2, f"{exc.diag.message_primary or exc}: this PostgreSQL database is not "
                     "migrated; run "
                     "`platformdb migrate up` (or point PLATFORMDB_POSTGRES_URL at one that is)",
             debug)
    except Exception as exc:  # one line, not a traceback, for the unexpected too
        fail(exc, 2, f"{type(exc).__name__}: {exc} (rerun with --debug for details)", debug)


def with_advice(exc: PlatformDBError) -> str:
    """The error's message plus what to do about it on the command line: its hint as a
    flag or a command, or for a store that cannot be reached, where to look."""
    message = str(exc)
    hint = exc.hint or Hint()
    if hint.flag:
        return f"{message}; pass {hint.flag}" + (f" {hint.does}" if hint.does else "")
    if hint.command:
        return f"{message}: run `{hint.command}`" + (f" {hint.does}" if hint.does else "")
    if isinstance(exc, StoreUnavailable):
        variable = (hint.variable or url_variable(exc.store)
                    or "the store's PLATFORMDB_*_URL")
        if isinstance(exc, Unavailable):
            return f"{message}; start it with `platformdb up`, or set {variable}"
        return f"{message}; check {variable}, or run `platformdb up` for the embedded stack"
    return message


def fail(exc: BaseException, code: int, message: str, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[red]error:[/] {escape(redact_text(one_line(message)))}", soft_wrap=True)
    sys.exit(code)

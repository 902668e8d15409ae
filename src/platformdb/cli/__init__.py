"""The ``platformdb`` command: parse, call one library function, print.

One module per command group (:mod:`.stack`, :mod:`.migrations`, :mod:`.ops`,
:mod:`.etl`, :mod:`.seed`, :mod:`.maintenance`, :mod:`.tenant`, :mod:`.dev`), all registered on
the one Typer :data:`app` of :mod:`.base`. Exit codes: 0 success, 1 a check that
failed, 2 bad usage, configuration or an unreachable server. Errors are one
line; ``--debug`` adds the traceback and never changes the exit code.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Annotated, NoReturn

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
from platformdb.cli.base import Interrupted, app, err, unwrap_help
from platformdb.errors import Hint, PlatformDBError, StoreUnavailable, Unavailable, one_line
from platformdb.ops.context import url_variable
from platformdb.redaction import redact_text

unwrap_help(app)

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


INTERRUPTS = [0]
"""How many times SIGINT arrived (the first stops the command; the second is told the
cleanup is finishing; a third stops that too)."""


def _on_interrupt(signum: int, frame: object) -> None:
    INTERRUPTS[0] += 1
    if INTERRUPTS[0] == 2:
        err.print("[yellow]interrupted:[/] finishing the cleanup so nothing is left half done "
                  "(Ctrl-C again stops at once)", soft_wrap=True)
        return
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: run the app, turning known errors into one line and an exit code.

    ``--debug`` adds the traceback; it never changes the exit code. Ctrl-C (a SIGINT
    to the process group, or to this process alone) stops the command: "interrupted;"
    and what was kept or undone, exit 130.
    """
    debug = "--debug" in sys.argv or os.environ.get("PLATFORMDB_DEBUG") == "1"
    # Installed even when SIGINT arrives ignored (a shell's background job): an operator's
    # kill -INT must stop the command, and its child programs with it.
    signal.signal(signal.SIGINT, _on_interrupt)
    try:
        app()
    except SystemExit as exc:
        if INTERRUPTS[0] and exc.code not in (0, None):
            interrupted(exc, debug)
        raise
    except Interrupted as exc:
        interrupted(exc.__cause__ or exc, debug)
    except KeyboardInterrupt as exc:
        interrupted(exc, debug)
    except BaseException as exc:
        if INTERRUPTS[0]:  # a child program stopped by the same Ctrl-C failed first
            interrupted(exc, debug)
        explain(exc, debug)


def explain(exc: BaseException, debug: bool) -> None:
    """One line and the exit code for any error that reached the top."""
    if isinstance(exc, PlatformDBError):
        fail(exc, exc.exit_code, with_advice(exc), debug)
    if isinstance(exc, UndefinedTable):  # a command that needs the platform's schema
        fail(exc, 2, f"{exc.diag.message_primary or exc}: this PostgreSQL database is not "
                     "migrated; run "
                     "`platformdb migrate up` (or point PLATFORMDB_POSTGRES_URL at one that is)",
             debug)
    if isinstance(exc, OSError):
        fail(exc, 2, os_error(exc), debug)
    if not isinstance(exc, Exception):
        raise exc
    # one line, not a traceback, for the unexpected too
    fail(exc, 2, f"{type(exc).__name__}: {exc} (rerun with --debug for details)", debug)


def os_error(exc: OSError) -> str:
    """A file or socket error as ``<path>: <what>``, the way Unix tools say it."""
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{other}: {what}"
    return what


def interrupted(exc: BaseException, debug: bool) -> None:
    """``interrupted;`` and what the work kept or undid (the notes the library added on
    its way out), exit 130. When putting things back after the interruption failed, that
    failure is said instead: nothing may be assumed undone."""
    outcome = notes(exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if not isinstance(exc, KeyboardInterrupt | SystemExit) and _interrupt_in(exc):
        failure = with_advice(exc) if isinstance(exc, PlatformDBError) else (
            f"{type(exc).__name__}: {exc}")
        said = f"cleaning up failed: {failure}" + "".join(f"; {note}" for note in outcome)
    else:
        said = "; ".join(outcome) or "nothing was changed"
    err.print(f"[red]interrupted;[/] {escape(redact_text(one_line(said)))}", soft_wrap=True)
    sys.exit(130)


def _interrupt_in(exc: BaseException) -> bool:
    """A KeyboardInterrupt among the exceptions ``exc`` came from (it was raised while
    cleaning up after one)."""
    seen: set[int] = set()
    found: BaseException | None = exc.__cause__ or exc.__context__
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt):
            return True
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return False


def notes(exc: BaseException | None) -> list[str]:
    """The notes of ``exc`` and of the exceptions it came from, oldest first, once each."""
    found: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for note in reversed(getattr(exc, "__notes__", [])):
            if note not in found:
                found.insert(0, note)
        exc = exc.__cause__ or exc.__context__
    return found


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


def fail(exc: BaseException, code: int, message: str, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(f"[red]error:[/] {escape(redact_text(one_line(message)))}", soft_wrap=True)
    sys.exit(code)

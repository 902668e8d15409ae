"""What every command module shares: the app, options, output, and the edge where
configuration turns into a context (:func:`context`, once per command).

Output goes through :func:`show` / :func:`print_json` / :func:`warn`: secrets are
masked, and when stdout is not a terminal nothing is wrapped or cut.
"""

from __future__ import annotations

import inspect
import json
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from platformdb.cli.progress import Display
from platformdb.config import Settings
from platformdb.ops import context as contexts
from platformdb.ops.context import Context
from platformdb.redaction import redact_text

COMMAND_ORDER = ("up", "down", "status", "env", "migrate", "seed", "etl", "backup", "restore",
                 "health", "stats", "exporter", "partitions", "retention", "tenant", "shell",
                 "query", "pgbouncer", "secrets", "docs", "lint")


class Interrupted(Exception):
    """A command stopped by Ctrl-C (SIGINT). Typer would turn the ``KeyboardInterrupt``
    into a silent exit 130; this carries it (``__cause__``, with the notes that say
    what was kept or undone) to :func:`platformdb.cli.main`, which says so."""


class CommandsInOrder(TyperGroup):
    """Help lists commands as a newcomer meets them, not in import order."""

    def list_commands(self, ctx: Any) -> list[str]:
        def rank(name: str) -> tuple[int, str]:
            return (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER),
                    name)

        return sorted(self.commands, key=rank)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc


app = typer.Typer(
    cls=CommandsInOrder,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _metavar(self: TyperOption, ctx: Any) -> str | None:
    """Help shows conventional metavars (``--to N``), never Typer's ``<bool>``/``<list[str]>``."""
    if self.is_flag or self.count:
        return None
    return self.metavar or self.name.upper() if self.name else None


def _no_type(self: TyperArgument, ctx: Any) -> str | None:
    return None  # an argument's name already says what it takes


def unwrapped(text: str) -> str:
    """A docstring as help shows it: each prose paragraph on one line, so the terminal wraps
    it at its own width (Typer's rich mode keeps every line break), while indented blocks
    (examples) keep theirs."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        paragraph if any(line.startswith(" ") for line in paragraph.splitlines())
        else " ".join(line.strip() for line in paragraph.splitlines())
        for paragraph in paragraphs)


def unwrap_help(typer_app: typer.Typer) -> None:
    """Every command's help of ``typer_app`` (and its groups) :func:`unwrapped`."""
    for info in typer_app.registered_commands:
        text = info.help if isinstance(info.help, str) else inspect.getdoc(info.callback)
        if text:
            info.help = unwrapped(text)
    callback = typer_app.registered_callback
    if callback is not None and callback.callback is not None:
        text = inspect.getdoc(callback.callback)
        if text and not isinstance(callback.help, str):
            callback.help = unwrapped(text)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            unwrap_help(group.typer_instance)


TyperOption.display_type_rich = _metavar  # type: ignore[method-assign]
TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign, assignment]

# Piped output is for logs and tools: never wrap or cut a table or a line.
_PIPED_WIDTH = 1_000_000
out = Console(width=None if sys.stdout.isatty() else _PIPED_WIDTH, highlight=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPED_WIDTH,
              highlight=False)

STORES = " | ".join(contexts.store_names())
"""The stores, as help lists them (the registry's, in its order)."""
NUMBERED = " | ".join(contexts.numbered_store_names())


def complete_store(incomplete: str) -> list[str]:
    """Shell completion: the stores' names."""
    return [name for name in contexts.store_names() if name.startswith(incomplete)]


def complete_store_or_all(incomplete: str) -> list[str]:
    return [name for name in (*contexts.store_names(), "all") if name.startswith(incomplete)]


def complete_numbered(incomplete: str) -> list[str]:
    return [name for name in contexts.numbered_store_names() if name.startswith(incomplete)]


StoreOption = Annotated[
    list[str] | None,
    typer.Option("--store", "-s", metavar="STORE",
                 help=f"{STORES} (repeatable; default: every store)",
                 autocompletion=complete_store),
]
OneStoreOption = Annotated[
    str, typer.Option("--store", "-s", metavar="STORE", help=NUMBERED,
                      autocompletion=complete_numbered)]
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
    """The configuration, read here at the edge (commands of the stack itself take it)."""
    return contexts.settings(cluster)


_display: list[Display] = []


def display() -> Display:
    """The one progress display of this process (on stderr), made on first use."""
    if not _display:
        _display.append(Display(err))
    return _display[0]


def context(*, start: bool, stores: list[str] | None = None, cluster: str | None = None,
            migrate: dict[str, object] | None = None) -> Context:
    """Where the stores are and how migrations behave: configuration turned into a
    context once, here at the edge; long work draws its progress on stderr.

    ``start``: commands that do work start the embedded servers they need;
    inspection commands (status, health, stats) never do. ``migrate``: a migration
    command's flags (over the environment's ``PLATFORMDB_MIGRATE_*``).
    """
    return contexts.resolve(settings(cluster), start=start, stores=stores, migrate=migrate,
                            progress=display())


def print_json(value: Any) -> None:
    """``value`` as JSON on stdout, secrets masked (plain text: tools read it)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime | date | time):
            return obj.isoformat()
        if isinstance(obj, Path | UUID | Decimal | timedelta):
            return str(obj)
        if isinstance(obj, set | frozenset):
            return sorted(obj, key=str)
        if isinstance(obj, bytes):
            return obj.decode("utf-8", errors="backslashreplace")
        raise TypeError(f"{type(obj).__name__} is not JSON")

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


def store_or_all(store: str) -> list[str] | None:
    """``all`` (every store) or one store's name (checked where the context is made)."""
    return None if store == "all" else [store]

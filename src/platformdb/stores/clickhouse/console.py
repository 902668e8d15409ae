"""ClickHouse from a shell: one statement (:func:`clickhouse_query`) and a prompt.

:class:`ClickHouseConsole` is a small SQL prompt for ClickHouse, the only store
with no client program in the embedded stack (chDB runs inside this process):
readline editing and history, statements end at ``;`` (several lines
allowed), results as tables, ``\\q`` quits. Piped input runs statement by
statement and stops at the first error.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console

from platformdb import clickhouse
from platformdb.errors import (
    ConfigError,
    Hint,
    PlatformDBError,
    QueryFailed,
    StoreUnavailable,
    ValidationError,
)
from platformdb.render import FORMATS, as_csv, as_json, as_table, as_tsv
from platformdb.types import QueryResult

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

# Statements whose answer is rows; anything else runs as a command (DDL, INSERT, SET...).
_CH_ROWS = ("select", "with", "show", "describe", "desc", "explain", "exists", "check", "values")


# ------------------------------------------------------------------ one statement


def clickhouse_query(client: Client, statement: str) -> QueryResult:
    """One ClickHouse statement on an open client: rows for queries, ``OK`` for commands."""
    text = statement.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    try:
        if first in _CH_ROWS:
            with clickhouse.translated():
                found = client.query(text)
            rows = [tuple(row) for row in found.result_rows]
            return QueryResult(list(found.column_names), rows, f"{len(rows)} rows")
        clickhouse.command(client, text)
    except PlatformDBError as exc:
        if isinstance(exc, StoreUnavailable):
            raise
        raise QueryFailed(str(exc)) from exc
    return QueryResult(status="OK")


def query(url: str, statement: str, *, wait: float = clickhouse.CHDB_WAIT) -> QueryResult:
    """One statement on the ClickHouse at ``url`` (opened and closed for it); a text with
    several statements is refused before anything runs."""
    statements, rest = split_statements(statement)
    count = len(statements) + (1 if _has_code(rest) else 0)
    if count > 1:
        raise ValidationError(f"query runs one statement; this text holds {count}",
                              hint=Hint(command="platformdb shell clickhouse",
                                        does="to run a script (piped input runs it)"))
    with clickhouse.connect(url, wait=wait) as client:
        return clickhouse_query(client, statement)


def shell(url: str, args: list[str], *, history: Path | None = None,
          wait: float = clickhouse.CHDB_WAIT) -> int:
    """The prompt on ``url`` (no client program: chDB runs inside this process); piped
    input runs as a script. On chDB the prompt holds the path: other commands wait until
    it quits."""
    if args:
        raise ConfigError("the ClickHouse prompt takes no extra arguments")
    with clickhouse.connect(url, wait=wait) as client:
        prompt = ClickHouseConsole(client, history=history)
        if not sys.stdin.isatty():
            return prompt.run_script(sys.stdin.read())
        return prompt.interact()


# ------------------------------------------------------------------ the ClickHouse console

HELP = """\\q           quit (also: quit, exit, Ctrl-D)
\\dt          list the tables (SHOW TABLES)
\\format F    print results as table, csv, json or tsv
\\?           this help
Statements end with ; and may span lines."""


def split_statements(text: str) -> tuple[list[str], str]:
    """Complete statements of ``text`` (each ended by ``;`` outside quotes and comments),
    and the unfinished rest."""
    statements: list[str] = []
    start = 0
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        elif ch == ";":
            statement = text[start:i].strip()
            if _has_code(statement):
                statements.append(statement)
            start = i + 1
        i += 1
    return statements, text[start:]


def _is_meta(line: str) -> bool:
    """A backslash command (``\\dt``) or quit/exit, which the prompt runs itself."""
    stripped = line.strip()
    return stripped.startswith("\\") or stripped.lower() in ("quit", "exit")


def _has_code(statement: str) -> bool:
    lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
    return bool("".join(lines).strip())


class ClickHouseConsole:
    """An interactive (or piped) SQL prompt on one open ClickHouse client."""

    def __init__(self, client: Client, *, out: IO[str] | None = None,
                 err: IO[str] | None = None, history: Path | None = None) -> None:
        self.client = client
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.history = history
        self.format = "table"
        self.database = str(client.database)
        self.failed = False
        """The last backslash command failed (a script stops there)."""

    def run_script(self, text: str) -> int:
        """Run every statement and backslash command of ``text``, as the prompt would;
        stop at the first error (exit status 1) or at ``\\q``."""
        buffer = ""
        for line in text.splitlines():
            if not buffer.strip() and _is_meta(line):
                self.failed = False
                if self.meta(line.strip()):
                    return 0
                if self.failed:
                    return 1
                continue
            buffer += line + "\n"
            statements, buffer = split_statements(buffer)
            for statement in statements:
                if not self.execute(statement, timing=False):
                    return 1
        if _has_code(buffer) and not self.execute(buffer.strip(), timing=False):
            return 1
        return 0

    def interact(self) -> int:
        """Prompt until ``\\q`` or end of input; errors are printed and the prompt goes on."""
        readline = self._readline()
        self.err.write(f"ClickHouse ({self.database}); \\? for help, \\q to quit\n")
        buffer = ""
        try:
            while True:
                prompt = f"{self.database} :) " if not buffer.strip() else " " * len(
                    self.database) + " :-] "
                try:
                    line = input(prompt)
                except KeyboardInterrupt:
                    self.err.write("\n")
                    buffer = ""
                    continue
                except EOFError:
                    self.err.write("\n")
                    return 0
                if not buffer.strip() and _is_meta(line):
                    if self.meta(line.strip()):
                        return 0
                    continue
                buffer += line + "\n"
                statements, buffer = split_statements(buffer)
                for statement in statements:
                    self.execute(statement, timing=True)
        finally:
            if readline is not None and self.history is not None:
                with contextlib.suppress(OSError):
                    self.history.parent.mkdir(parents=True, exist_ok=True)
                    readline.write_history_file(str(self.history))
                    self.history.chmod(0o600)

    def meta(self, command: str) -> bool:
        """A backslash command; True when it asks to quit."""
        word, _, argument = command.partition(" ")
        if word in ("\\q", "quit", "exit"):
            return True
        if word == "\\dt":
            self.failed = not self.execute("SHOW TABLES", timing=False)
        elif word == "\\format" and argument.strip() in FORMATS:
            self.format = argument.strip()
        elif word == "\\?":
            self.out.write(HELP + "\n")
        else:
            self.err.write(f"unknown command {command!r}; \\? lists them\n")
            self.failed = True
        return False

    def execute(self, statement: str, *, timing: bool) -> bool:
        started = time.perf_counter()
        try:
            result = clickhouse_query(self.client, statement)
        except QueryFailed as exc:
            self.err.write(f"error: {exc}\n")
            return False
        elapsed = time.perf_counter() - started
        self.show(result)
        if timing:
            rows = f"{len(result.rows)} rows in set. " if result.columns else ""
            self.err.write(f"{rows}Elapsed: {elapsed:.3f} sec.\n")
        return True

    def show(self, result: QueryResult) -> None:
        if self.format == "csv":
            self.out.write(as_csv(result))
        elif self.format == "json":
            self.out.write(as_json(result) + "\n")
        elif self.format == "tsv":
            self.out.write(as_tsv(result))
        else:
            console = Console(file=self.out, highlight=False,
                              width=None if self.out.isatty() else 1_000_000)
            console.print(as_table(result), soft_wrap=not result.columns)
        self.out.flush()

    def _readline(self) -> Any:
        try:
            import readline
        except ImportError:  # not on every platform; the prompt still works without it
            return None
        if self.history is not None:
            with contextlib.suppress(OSError):
                readline.read_history_file(str(self.history))
        readline.set_history_length(1000)
        return readline

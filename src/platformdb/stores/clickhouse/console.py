"""Query every store from a shell: one-off statements, and interactive consoles.

- :func:`run_query` runs one statement on PostgreSQL (SQL), ClickHouse (SQL, on
  a server or on chDB) or Redis (a command line such as ``HGETALL key``) and
  returns a :class:`Result`; :func:`render` prints it as a table, CSV or JSON.
- :func:`psql_command` / :func:`redis_cli_command`: the client program of the
  store, pointed at the configured URL with the password passed out of band (a
  temporary ``PGPASSFILE``, ``REDISCLI_AUTH``), never on the command line where
  ``ps`` would show it.
- :class:`ClickHouseConsole`: a small SQL prompt for ClickHouse, the only store
  with no client program in the embedded stack (chDB runs inside this process):
  readline editing and history, statements end at ``;`` (several lines
  allowed), results as tables, ``\\q`` quits. Piped input runs statement by
  statement and stops at the first error.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import psycopg
from redis.exceptions import RedisError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from platformdb import clickhouse
from platformdb.binaries import pg_tool, redis_tool
from platformdb.errors import ConfigError, PlatformDBError, StoreUnavailable
from platformdb.postgres import connect as pg_connect
from platformdb.redis import client as redis_client
from platformdb.types import check_store

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

FORMATS = ("table", "csv", "json")
# Statements whose answer is rows; anything else runs as a command (DDL, INSERT, SET...).
_CH_ROWS = ("select", "with", "show", "describe", "desc", "explain", "exists", "check", "values")


@dataclass
class Result:
    """What a statement returned: rows under column names, or a status line."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    status: str = ""


# ------------------------------------------------------------------ one statement


def run_query(store: str, url: str, statement: str) -> Result:
    """Run ``statement`` on ``store`` at ``url`` (autocommit: it takes effect at once)."""
    if not statement.strip():
        raise ConfigError("the statement is empty")
    check_store(store)
    if store == "postgresql":
        return _postgres(url, statement)
    if store == "clickhouse":
        with clickhouse.connect(url) as client:
            return clickhouse_query(client, statement)
    return _redis(url, statement)


def _postgres(url: str, statement: str) -> Result:
    try:
        with pg_connect(url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(statement.encode())  # as written: no parameters, no % escaping
            if cursor.description is None:
                return Result(status=cursor.statusmessage or "OK")
            return Result([column.name for column in cursor.description],
                          [tuple(row) for row in cursor.fetchall()],
                          cursor.statusmessage or "")
    except psycopg.Error as exc:
        raise QueryFailed(str(exc).strip()) from exc


def clickhouse_query(client: Client, statement: str) -> Result:
    """One ClickHouse statement on an open client: rows for queries, ``OK`` for commands."""
    text = statement.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    try:
        if first in _CH_ROWS:
            with clickhouse.translated():
                found = client.query(text)
            rows = [tuple(row) for row in found.result_rows]
            return Result(list(found.column_names), rows, f"{len(rows)} rows")
        clickhouse.command(client, text)
    except PlatformDBError as exc:
        if isinstance(exc, StoreUnavailable):
            raise
        raise QueryFailed(str(exc)) from exc
    return Result(status="OK")


def _redis(url: str, statement: str) -> Result:
    try:
        words = shlex.split(statement)
    except ValueError as exc:
        raise ConfigError(f"cannot split the Redis command: {exc}") from exc
    client: Any = redis_client.connect(url, socket_connect_timeout=5, socket_timeout=30)
    with contextlib.suppress(AttributeError):
        client.response_callbacks.clear()  # the server's reply as redis-cli shows it
    try:
        reply = client.execute_command(*words)
    except RedisError as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        client.close()
    return redis_result(reply)


def redis_result(reply: Any) -> Result:
    """A Redis reply as rows: a map as (field, value), a list one value per row."""
    if isinstance(reply, dict):
        return Result(["field", "value"], [(_text(k), _text(v)) for k, v in reply.items()])
    if isinstance(reply, list | tuple | set):
        return Result(["value"], [(_text(item),) for item in reply])
    if reply is None:
        return Result(["value"], [(None,)], "(nil)")
    return Result(["value"], [(_text(reply),)])


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list | tuple):
        return json.dumps([_text(v) for v in value], default=str)
    if isinstance(value, dict):
        return json.dumps({str(_text(k)): _text(v) for k, v in value.items()}, default=str)
    return value


class QueryFailed(PlatformDBError):
    """The store refused the statement (syntax, permissions, a constraint...)."""

    exit_code = 1


# ------------------------------------------------------------------ output


def cell(value: Any) -> str:
    """A value as text, the way a CLI shows it (NULL as empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float | Decimal):
        return format(value, "f") if isinstance(value, Decimal) else repr(value)
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return cell(value)  # Decimal, UUID, dates: as text, exactly


def as_csv(result: Result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if result.columns:
        writer.writerow(result.columns)
        writer.writerows([[cell(v) for v in row] for row in result.rows])
    else:
        writer.writerow([result.status])
    return out.getvalue()


def json_value(result: Result) -> Any:
    """``result`` as JSON-ready data: a list of row objects, or ``{"status": ...}``."""
    if not result.columns:
        return {"status": result.status}
    return [{name: _json_value(value) for name, value in zip(result.columns, row, strict=True)}
            for row in result.rows]


def as_json(result: Result) -> str:
    return json.dumps(json_value(result), indent=2)


def as_table(result: Result) -> Any:
    """A rich table (or the status line) of ``result``."""
    if not result.columns:
        return escape(result.status)
    table = Table(*[escape(name) for name in result.columns])
    for column in table.columns:
        column.overflow = "fold"
    for row in result.rows:
        table.add_row(*[escape(cell(v)) if v is not None else "[dim]NULL[/]" for v in row])
    return table


# ------------------------------------------------------------------ client programs


@dataclass
class Program:
    """A client program to run: its arguments and environment (the password is in there)."""

    args: list[str]
    env: dict[str, str]


@contextlib.contextmanager
def psql_command(url: str, extra: Sequence[str] = ()) -> Iterator[Program]:
    """psql pointed at ``url`` (the server's major version when installed, else the embedded
    wheel's); the password goes through a temporary 0600 ``PGPASSFILE``, removed on exit."""
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = unquote(parts.username) if parts.username else ""
    bare = parts._replace(netloc=f"{parts.username}@{netloc}" if user else netloc).geturl()
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    with tempfile.TemporaryDirectory(prefix="platformdb-psql-") as folder:
        if password is not None:
            passfile = Path(folder) / "pgpass"
            fields = [parts.hostname or "*", str(parts.port or 5432),
                      unquote(parts.path.lstrip("/")) or "*", user or "*", password]
            descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(":".join(_pgpass_escape(f) for f in fields) + "\n")
            env["PGPASSFILE"] = str(passfile)
        yield Program([pg_tool("psql", url), "-d", bare, *extra], env)


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def redis_cli_command(url: str, extra: Sequence[str] = ()) -> Program:
    """valkey-cli (the embedded wheel's) or redis-cli pointed at ``url``; the password in
    ``REDISCLI_AUTH``, never in the arguments."""
    parts = urlsplit(url)
    scheme = parts.scheme
    args = [str(redis_tool("cli"))]
    if scheme == "unix":
        args += ["-s", parts.path]
    else:
        first = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
        host, _, port = first.rpartition(":") if ":" in first else (first, "", "6379")
        args += ["-h", host.strip("[]") or "127.0.0.1", "-p", port or "6379"]
    if scheme in ("rediss", "rediss+cluster"):
        args.append("--tls")
    if "cluster" in scheme:
        args.append("-c")
    database = parts.path.strip("/") if scheme != "unix" else ""
    if database and database != "0":
        args += ["-n", database]
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if parts.password is not None:
        if parts.username:
            args += ["--user", unquote(parts.username)]
        env["REDISCLI_AUTH"] = unquote(parts.password)
    elif parts.username:  # redis://PASSWORD@host: a lone userinfo word is the password
        env["REDISCLI_AUTH"] = unquote(parts.username)
    return Program([*args, *extra], env)


# ------------------------------------------------------------------ the ClickHouse console

HELP = """\\q           quit (also: quit, exit, Ctrl-D)
\\dt          list the tables (SHOW TABLES)
\\format F    print results as table, csv or json
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

    def run_script(self, text: str) -> int:
        """Run every statement of ``text``; stop at the first error (exit status 1)."""
        statements, rest = split_statements(text)
        if _has_code(rest):
            statements.append(rest.strip())
        for statement in statements:
            if not self.execute(statement, timing=False):
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
                if (not buffer.strip() and line.strip().startswith("\\")) or (
                        not buffer.strip() and line.strip().lower() in ("quit", "exit")):
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
            self.execute("SHOW TABLES", timing=False)
        elif word == "\\format" and argument.strip() in FORMATS:
            self.format = argument.strip()
        elif word == "\\?":
            self.out.write(HELP + "\n")
        else:
            self.err.write(f"unknown command {command!r}; \\? lists them\n")
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

    def show(self, result: Result) -> None:
        if self.format == "csv":
            self.out.write(as_csv(result))
        elif self.format == "json":
            self.out.write(as_json(result) + "\n")
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

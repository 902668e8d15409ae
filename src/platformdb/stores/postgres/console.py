"""PostgreSQL from a shell: one statement (:func:`query`) and psql (:func:`psql_command`).

psql is pointed at the configured URL with the password passed out of band (a
temporary ``PGPASSFILE``), never on the command line where ``ps`` would show it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from platformdb.binaries import pg_tool
from platformdb.errors import Hint, QueryFailed, ValidationError
from platformdb.postgres import connect as pg_connect
from platformdb.types import ClientProgram, QueryResult


def one_statement(statement: str) -> str:
    """``statement``, refused when it holds several (``query`` would run them all as one
    transaction and show the first result only)."""
    import pglast  # the cli extra's parser: only one-statement queries need it

    found = pglast.split(statement, with_parser=False)
    if len(found) > 1:
        raise ValidationError(f"query runs one statement; this text holds {len(found)}",
                              hint=Hint(command="platformdb shell postgresql",
                                        does="to run a script (piped input runs it)"))
    return statement


def query(url: str, statement: str) -> QueryResult:
    """Run one statement as written (no parameters, no % escaping), in autocommit."""
    one_statement(statement)
    try:
        with pg_connect(url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(statement.encode())  # as written: no parameters, no % escaping
            if cursor.description is None:
                return QueryResult(status=cursor.statusmessage or "OK")
            return QueryResult([column.name for column in cursor.description],
                               [tuple(row) for row in cursor.fetchall()],
                               cursor.statusmessage or "")
    except psycopg.Error as exc:
        raise QueryFailed(str(exc).strip()) from exc


@contextlib.contextmanager
def psql_command(url: str, extra: Sequence[str] = ()) -> Iterator[ClientProgram]:
    """psql pointed at ``url`` (the server's major version when installed, else the embedded
    wheel's); the password goes through a temporary 0600 ``PGPASSFILE``, removed on exit."""
    with credentials(url) as (bare, env):
        yield ClientProgram([pg_tool("psql", url), "-d", bare, *extra], env)


@contextlib.contextmanager
def credentials(url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``url`` without its password, and an environment for a PostgreSQL client program
    that holds the password in a temporary 0600 ``PGPASSFILE`` (in a 0700 folder, removed
    on exit): a child's arguments, which any local user can read in /proc, never carry it."""
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
            descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(":".join(_pgpass_escape(f) for f in fields) + "\n")
            env["PGPASSFILE"] = str(passfile)
        yield bare, env


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")

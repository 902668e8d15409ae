"""The PostgreSQL driver of the migration engine.

Files are parsed with the real PostgreSQL parser (pglast) before anything
runs. A transactional migration and its ledger row commit together under
``lock_timeout`` and ``statement_timeout``: a migration queues for a table
lock for at most ``lock_timeout`` (and so blocks the queries queued behind it
for at most that long), then gives up its place, pauses and tries again
(:mod:`platformdb.migrate.retry`). A session advisory lock keeps concurrent
runners apart; a runner waits for it for a bounded time and then names the
session holding it.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pglast
import psycopg
from pglast import ast
from psycopg import sql
from psycopg.conninfo import make_conninfo

from platformdb.binaries import pg_tool
from platformdb.errors import Hint, MigrationError, StoreUnavailable
from platformdb.migrate.base import AppliedMigration, Migration
from platformdb.migrate.engine import Migrator, who
from platformdb.migrate.options import ENV_SCRATCH_URL, MigrateOptions, parse_duration
from platformdb.migrate.planning import MigrationPlan
from platformdb.migrate.retry import Attempts, RetriesExhausted, with_lock_retries
from platformdb.migrate.snapshot import SchemaState, Snapshot
from platformdb.postgres import connect
from platformdb.stores.postgres.analysis import Statement, parse, relations
from platformdb.stores.postgres.backfill import backfill_settings, parse_update
from platformdb.stores.postgres.backfill import run as run_backfill
from platformdb.stores.postgres.catalog import advisory_holders, describe_holders, relation_holders
from platformdb.stores.postgres.online_index import build_online, online_index_problem
from platformdb.stores.postgres.plan import PostgresPlanner
from platformdb.stores.postgres.snapshot import snapshot

log = logging.getLogger("platformdb.migrate")

LEDGER = "platformdb.schema_migrations"
STATE = "platformdb.schema_state"
LEDGER_ID = sql.Identifier(*LEDGER.split("."))
STATE_ID = sql.Identifier(*STATE.split("."))
# pg_advisory_lock key: the first 8 bytes of sha256("platformdb.migrate")
LOCK_KEY = 0x3F1E_9C0D_5A7B_2C11
RUNNER_POLL = 0.2
"""Seconds between two tries of the runner lock."""


class StatementFailed(Exception):
    """A statement of a file failed; carries the statement and its line for the message."""

    def __init__(self, statement: Statement, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.statement = statement
        self.error = error
        line = statement.line
        position = error.diag.statement_position
        if position:
            line += statement.sql[: int(position) - 1].count("\n")
        self.line = line


# Statements that run as several transactions: a failed attempt can leave something behind.
_NEVER_RETRIED = ("REINDEX", "DETACH PARTITION")


class PostgresDriver:
    """Migrations for one PostgreSQL database.

    ``options`` sets the lock timeout, the retries and the runner wait
    (:class:`~platformdb.migrate.options.MigrateOptions`); ``lock_timeout`` /
    ``statement_timeout`` (PostgreSQL interval texts) override its values.
    ``attempts`` records, per migration label, how many attempts applying it took.
    """

    store = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        options: MigrateOptions | None = None,
        lock_timeout: str | None = None,
        statement_timeout: str | None = None,
    ) -> None:
        self.url = url
        base = options or MigrateOptions()
        self.options = base.with_overrides(
            lock_timeout_ms=parse_duration(lock_timeout, "lock_timeout") if lock_timeout else None,
            statement_timeout_ms=(parse_duration(statement_timeout, "statement_timeout")
                                  if statement_timeout else None))
        self.attempts: dict[str, Attempts] = {}
        self.conn = connect(url, autocommit=True)

    @property
    def lock_timeout(self) -> str:
        return self.options.lock_timeout

    @property
    def statement_timeout(self) -> str:
        return self.options.statement_timeout

    def ping(self) -> None:
        self.conn.execute("SELECT 1")

    def validate(self, migration: Migration, text: str) -> None:
        statements = parse(text, migration.path)
        if text is migration.sql or text == migration.sql:
            check_directives(migration, statements)

    # ------------------------------------------------------------ runner lock

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The session advisory lock that serialises runners, waited for at most
        ``runner_wait_s``; a runner that gives up names the session holding it."""
        since = datetime.now(UTC).strftime("%H:%M:%SZ")
        self.conn.execute("SELECT set_config('application_name', %s, false)",
                          (f"platformdb migrate since {since} by {who()}"[:63],))
        wait = self.options.runner_wait_s
        deadline = time.monotonic() + wait
        announced = False
        while not self._try_lock():
            holders = describe_holders(advisory_holders(self.conn, LOCK_KEY))
            holders = holders or "a session that has just released it"
            if time.monotonic() >= deadline:
                raise MigrationError(
                    f"another migration runner still holds the PostgreSQL migration lock after "
                    f"{wait:g} s: {holders}")
            if not announced:
                log.warning("waiting up to %g s for another migration runner: %s", wait, holders)
                announced = True
            time.sleep(RUNNER_POLL)
        try:
            yield
        finally:
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
                self.conn.execute("SELECT set_config('application_name', 'platformdb', false)")

    def _try_lock(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------ ledger

    def ensure_ledger(self) -> None:
        ddl = (resources.files("platformdb.stores.postgres") / "sql"
               / "postgres_ledger.sql").read_text()
        with self.conn.transaction():
            self.conn.execute(ddl)

    def applied(self) -> list[AppliedMigration]:
        exists = self.conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone()
        if exists is None or exists[0] is None:
            return []
        baselined = self.conn.execute(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attname = 'baselined' AND NOT attisdropped)", (LEDGER,)).fetchone()
        flag = sql.SQL("baselined" if baselined and baselined[0] else "false")
        rows = self.conn.execute(sql.SQL(
            "SELECT version, name, checksum, applied_at, duration_ms, applied_by, {flag}"
            " FROM {ledger} ORDER BY version").format(flag=flag, ledger=LEDGER_ID)
        ).fetchall()
        return [AppliedMigration(row[0], row[1], row[2], row[3], row[4], row[5],
                                 baselined=bool(row[6])) for row in rows]

    def _set_timeouts(self, local: bool) -> None:
        scope = "true" if local else "false"
        self.conn.execute(
            f"SELECT set_config('lock_timeout', %s, {scope}),"
            f" set_config('statement_timeout', %s, {scope})",
            (self.lock_timeout, self.statement_timeout),
        )

    def _reset_timeouts(self) -> None:
        if not self.conn.closed:
            self.conn.execute("RESET lock_timeout")
            self.conn.execute("RESET statement_timeout")

    # ------------------------------------------------------------ apply

    def apply(self, migration: Migration, applied_by: str) -> int:
        started = time.monotonic()
        statements = parse(migration.sql, migration.path)
        attempts = self.attempts.setdefault(migration.label, Attempts(migration.label))
        try:
            if migration.transactional:
                def attempt() -> None:
                    with self.conn.transaction():
                        self._set_timeouts(local=True)
                        self._execute(statements)
                        self._record(migration, applied_by, started)

                with_lock_retries(attempt, self.options, migration.path.name,
                                  describe=self._blocked_by, attempts=attempts)
            else:
                self._apply_outside_transaction(migration, statements, attempts)
                with_lock_retries(lambda: self._record_alone(migration, applied_by, started),
                                  self.options, migration.path.name, attempts=attempts)
        except RetriesExhausted as exc:
            raise self._gave_up(migration, exc) from exc.last
        except StatementFailed as exc:
            raise self._failure(migration, exc) from exc.error
        return int((time.monotonic() - started) * 1000)

    def _execute(self, statements: list[Statement]) -> None:
        for statement in statements:
            self._execute_one(statement)

    def _execute_one(self, statement: Statement) -> None:
        try:
            self.conn.execute(statement.sql)
        except psycopg.Error as exc:
            if self.conn.closed:
                raise StoreUnavailable(f"lost the PostgreSQL connection: {exc}",
                                       store="postgresql") from exc
            raise StatementFailed(statement, exc) from exc

    def _apply_outside_transaction(self, migration: Migration, statements: list[Statement],
                                   attempts: Attempts) -> None:
        """Run a no-transaction file statement by statement, each retried on its own.

        Each statement is its own transaction (autocommit), so one that failed on a lock
        changed nothing and is run again; earlier statements are not repeated. The
        CONCURRENTLY statements that run as several transactions are the exception:
        ``CREATE INDEX CONCURRENTLY`` is retried after the INVALID index a failed build
        left is dropped; ``REINDEX CONCURRENTLY`` and ``DETACH PARTITION CONCURRENTLY``
        are never retried.
        """
        self._set_timeouts(local=False)
        try:
            if "online-index" in migration.directives:
                for statement in statements:
                    build_online(self, statement, attempts)
                return
            if "backfill" in migration.directives:
                settings = backfill_settings(migration.directives["backfill"])
                run_backfill(self.conn, migration.label, statements[0].sql,
                             options=self.options, **settings)
                return
            for statement in statements:
                self._run_statement(statement, attempts)
        finally:
            self._reset_timeouts()

    def _run_statement(self, statement: Statement, attempts: Attempts) -> None:
        node: Any = pglast.parse_sql(statement.sql)[0].stmt
        where = f"{attempts.what} line {statement.line}"
        if isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname:
            index = index_name(node)
            self.run_with_retries(lambda: self._create_index_concurrently(statement, index),
                                  where, attempts)
            return
        text = " ".join(statement.sql.split()).upper()
        if any(word in text for word in _NEVER_RETRIED) and "CONCURRENTLY" in text:
            self._execute_one(statement)
            return
        self.run_with_retries(lambda: self._execute_one(statement), where, attempts)

    def run_with_retries(self, work: Callable[[], None], where: str,
                         attempts: Attempts | None = None) -> None:
        """One autocommit unit of work, retried on lock timeouts and deadlocks."""
        with_lock_retries(work, self.options, where, describe=self._blocked_by,
                          attempts=attempts)

    def run_sql(self, sql: str, line: int, attempts: Attempts | None = None) -> None:
        """One autocommit statement (a step of an online index), retried on lock errors."""
        statement = Statement(line, sql)
        what = attempts.what if attempts else "statement"
        self.run_with_retries(lambda: self._execute_one(statement), f"{what} line {line}",
                              attempts)

    def _create_index_concurrently(self, statement: Statement, index: str) -> None:
        """CREATE INDEX CONCURRENTLY that a failed earlier attempt cannot wedge: an INVALID
        index of the same name (left by a failed or interrupted build) is dropped first."""
        if index_state(self.conn, index) == "invalid":
            self._execute_one(Statement(statement.line,
                                        f"DROP INDEX CONCURRENTLY IF EXISTS {index}"))
        self._execute_one(statement)
        if index_state(self.conn, index) == "invalid":
            raise MigrationError(f"line {statement.line}: index {index} was built but is INVALID")

    def _record(self, migration: Migration, applied_by: str, started: float,
                baselined: bool = False) -> None:
        self.conn.execute(sql.SQL(
            "INSERT INTO {} (version, name, checksum, duration_ms, applied_by, baselined)"
            " VALUES (%s, %s, %s, %s, %s, %s)").format(LEDGER_ID),
            (migration.version, migration.name, migration.checksum,
             int((time.monotonic() - started) * 1000), applied_by, baselined),
        )

    def _record_alone(self, migration: Migration, applied_by: str, started: float) -> None:
        with self.conn.transaction():
            self._set_timeouts(local=True)
            self._record(migration, applied_by, started)

    def revert(self, migration: Migration, down_sql: str) -> int:
        started = time.monotonic()
        assert migration.down_path is not None
        statements = parse(down_sql, migration.down_path)
        attempts = self.attempts.setdefault(f"{migration.label} down",
                                            Attempts(migration.down_path.name))

        def attempt() -> None:
            with self.conn.transaction():
                self._set_timeouts(local=True)
                self._execute(statements)
                self.conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(LEDGER_ID),
                                  (migration.version,))

        try:
            with_lock_retries(attempt, self.options, migration.down_path.name,
                              describe=self._blocked_by, attempts=attempts)
        except RetriesExhausted as exc:
            raise self._gave_up(migration, exc, down=True) from exc.last
        except StatementFailed as exc:
            raise self._failure(migration, exc, down=True) from exc.error
        return int((time.monotonic() - started) * 1000)

    # ------------------------------------------------------------ errors

    def _blocked_by(self, failure: BaseException) -> str:
        """Who holds the locks the failed statement wanted (for logs and errors)."""
        statement = getattr(failure, "statement", None)
        if statement is None or self.conn.closed:
            return ""
        try:
            names = relations(pglast.parse_sql(statement.sql)[0].stmt)
        except pglast.parser.ParseError:
            return ""
        holders = relation_holders(self.conn, names)
        if not holders:
            return f"line {statement.line}"
        return f"line {statement.line}: {describe_holders(holders)}"

    def _gave_up(self, migration: Migration, exc: RetriesExhausted,
                 down: bool = False) -> MigrationError:
        name = migration.down_path.name if down and migration.down_path else migration.path.name
        tried = exc.attempts
        last = tried.errors[-1] if tried.errors else str(exc.last)
        applied = ("nothing from it was applied" if migration.transactional or down else
                   "it is a no-transaction migration: statements before the failing one stay"
                   " applied and rerunning finishes it")
        return MigrationError(
            f"{name} could not get its locks: {tried.count} attempt(s) of {self.lock_timeout}"
            f" lock_timeout over {tried.waited_s:.0f} s of pauses all failed (last: {last});"
            f" {applied}; run it again when the lock holders are gone, or raise"
            " PLATFORMDB_MIGRATE_LOCK_RETRIES")

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

    def plan(self, migrations: list[Migration]) -> list[MigrationPlan]:
        return PostgresPlanner(self.conn, self.options).plan(migrations)

    # ------------------------------------------------------------ schema

    def snapshot(self) -> Snapshot:
        return snapshot(self.conn)

    def expected_snapshot(self, migrations: list[Migration]) -> Snapshot:
        """What ``migrations`` build, in a scratch database on this server (or on
        ``options.scratch_url``'s), dropped afterwards."""
        with scratch_database(self.options.scratch_url or self.url, migrations) as url:
            driver = PostgresDriver(url)
            try:
                return driver.snapshot()
            finally:
                driver.close()

    def schema_state(self) -> SchemaState | None:
        if self.conn.execute("SELECT to_regclass(%s)", (STATE,)).fetchone() == (None,):
            return None
        row = self.conn.execute(sql.SQL("SELECT fingerprint, version, recorded_at, recorded_by,"
                                        " note FROM {}").format(STATE_ID)).fetchone()
        if row is None:
            return None
        return SchemaState(str(row[0]) if row[0] else None, int(row[1]), row[2], str(row[3]),
                           str(row[4]))

    def record_schema_state(self, fingerprint: str | None, version: int, note: str) -> None:
        self.conn.execute(sql.SQL(
            "INSERT INTO {} (id, fingerprint, version, recorded_by, note)"
            " VALUES (true, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " fingerprint = EXCLUDED.fingerprint, version = EXCLUDED.version,"
            " recorded_at = now(), recorded_by = EXCLUDED.recorded_by, note = EXCLUDED.note"
        ).format(STATE_ID),
            (fingerprint, version, who(), note))

    def record_baseline(self, migrations: list[Migration], applied_by: str) -> None:
        with self.conn.transaction():
            for migration in migrations:
                self._record(migration, applied_by, time.monotonic(), baselined=True)

    def dump_schema(self) -> str:
        return dump_schema(self.url)

    def close(self) -> None:
        self.conn.close()


def index_name(node: Any) -> str:
    """The schema-qualified name an IndexStmt creates (indexes live in their table's schema)."""
    schema = node.relation.schemaname if node.relation is not None else None
    return f"{schema}.{node.idxname}" if schema else str(node.idxname)


def index_state(conn: psycopg.Connection[Any], index: str) -> str:
    """``missing``, ``valid`` or ``invalid``."""
    row = conn.execute("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                       (index,)).fetchone()
    if row is None:
        return "missing"
    return "valid" if row[0] else "invalid"


def check_directives(migration: Migration, statements: list[Statement]) -> None:
    """What the online-index and backfill directives require of a file's statements."""
    if "online-index" in migration.directives:
        for statement in statements:
            node: Any = pglast.parse_sql(statement.sql)[0].stmt
            problem = online_index_problem(node)
            if problem:
                raise MigrationError(f"{migration.path.name}:{statement.line}: {problem}")
    if "backfill" in migration.directives:
        if len(statements) != 1:
            raise MigrationError(f"{migration.path.name}: a backfill migration holds exactly one"
                                 f" UPDATE statement, found {len(statements)} statements")
        try:
            backfill_settings(migration.directives["backfill"])
            parse_update(statements[0].sql)
        except MigrationError as exc:
            raise MigrationError(f"{migration.path.name}:{statements[0].line}: {exc}") from exc


DUMP_NOISE = re.compile(r"^(\\(un)?restrict |-- Dumped |ALTER TABLE ONLY .* ALTER COLUMN .* "
                        r"SET \(pg_attver=\d+\);$)")
"""pg_dump lines that differ from run to run on the same schema: the random
``\\restrict`` key, the tool versions, and the attribute option some server builds
stamp on every column with the time it was created."""


def without_dump_noise(text: str) -> str:
    """``text`` (pg_dump's output) without :data:`DUMP_NOISE`."""
    return "\n".join(line for line in text.splitlines() if not DUMP_NOISE.match(line)) + "\n"


def dump_schema(url: str, exclude_schemas: tuple[str, ...] = ("platformdb",)) -> str:
    """``pg_dump --schema-only`` without the lines that change from run to run."""
    cmd = [pg_tool("pg_dump", url), "--schema-only", "--no-owner", url]
    for schema in exclude_schemas:
        cmd[1:1] = ["--exclude-schema", schema]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StoreUnavailable(f"pg_dump failed: {result.stderr.strip().splitlines()[-1:]}")
    return without_dump_noise(result.stdout)


@contextmanager
def scratch_database(admin_url: str, migrations: list[Migration], *,
                     prefix: str = "platformdb_scratch") -> Iterator[str]:
    """A new database on ``admin_url``'s server (which needs CREATEDB) with ``migrations``
    applied; its URL, and it is dropped on exit (``WITH (FORCE)``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or str(exc)
        raise MigrationError(
            f"cannot create the scratch database the comparison needs ({reason}); it needs a "
            "server where this role may CREATE DATABASE",
            hint=Hint(variable=ENV_SCRATCH_URL)) from exc
    try:
        url = make_conninfo(admin_url, dbname=name)
        driver = PostgresDriver(url)
        try:
            Migrator(driver, migrations).up()
        finally:
            driver.close()
        yield url
    finally:
        with connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

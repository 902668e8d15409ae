"""The ClickHouse driver of the migration engine.

Same files, rules and ledger semantics as PostgreSQL, within what ClickHouse
offers:

- **Ledger**: ``platformdb_schema_migrations`` in the target database (a
  MergeTree table; reverts delete their row with a synchronous mutation).
- **Lock**: ``CREATE TABLE platformdb_migration_lock`` is atomic (exactly
  one concurrent creator succeeds); the holder drops it when done. A lock
  older than :data:`STALE_LOCK` (a crashed runner) is broken.
- **No transactions**: ClickHouse DDL is not transactional, so a migration
  that fails half-way is undone by running its ``.down.sql`` (which must be
  idempotent, ``IF EXISTS``), and then nothing is recorded. Every ClickHouse
  migration therefore needs a down file.
- **Rendering**: ``${pg_*}`` placeholders (dictionary sources) are filled from
  the PostgreSQL URL at apply time and never reach the ledger; with a cluster
  name, statements are rendered by :func:`platformdb.clickhouse.render_cluster`.
- **Validation**: every statement, single-node and cluster form, goes through
  ClickHouse's own parser (``formatQuery``) before anything runs.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from string import Template
from urllib.parse import unquote, urlsplit

from platformdb.clickhouse import ClickHouse, ClickHouseError, local_tables, render_cluster
from platformdb.errors import MigrationError
from platformdb.lint.ch_syntax import split
from platformdb.migrate.base import AppliedMigration, Migration

LEDGER = "platformdb_schema_migrations"
LOCK_TABLE = "platformdb_migration_lock"
STALE_LOCK = 3600.0
LOCK_WAIT = 60.0


class ClickHouseDriver:
    """Migrations for one ClickHouse database (chDB or a server)."""

    store = "clickhouse"

    def __init__(self, client: ClickHouse,
                 placeholders: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                 cluster: str | None = None, own_client: bool = True) -> None:
        self.client = client
        # a callable is resolved on first apply: status and health never need PostgreSQL
        self._placeholders = placeholders
        self.cluster = cluster
        self.own_client = own_client
        self._sharded: set[str] = set()

    # ---------------------------------------------------------- rendering

    def set_migrations(self, migrations: list[Migration]) -> None:
        """Tables that get the local/Distributed split in cluster mode: all MergeTree ones."""
        self._sharded = local_tables([s.text for m in migrations for s in split(m.sql)])

    @property
    def placeholders(self) -> dict[str, str]:
        if callable(self._placeholders):
            self._placeholders = dict(self._placeholders())
        return dict(self._placeholders or {})

    def statements(self, text: str, fill: bool = True) -> list[str]:
        """The statements to run for ``text``: placeholders filled, cluster-rendered."""
        filled = Template(text).safe_substitute(self.placeholders if fill else {})
        out: list[str] = []
        for statement in split(filled):
            if self.cluster is None:
                out.append(statement.text)
                continue
            rendered = render_cluster(statement.text, self.cluster, self.client.database,
                                      self._sharded or None)
            out.extend(part.text for part in split(rendered))
        return out

    # ------------------------------------------------------------- driver

    def ping(self) -> None:
        self.client.rows("SELECT 1")

    def validate(self, migration: Migration, text: str) -> None:
        for statement in split(text):
            for sql in self.statements(statement.text, fill=False):
                try:
                    self.client.rows("SELECT formatQuery({q:String})", {"q": sql})
                except ClickHouseError as exc:
                    raise MigrationError(
                        f"{migration.path.name}:{statement.line}: {exc}") from exc

    @contextmanager
    def lock(self) -> Iterator[None]:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self.client.command(
                    f"CREATE TABLE {LOCK_TABLE} (holder String, since DateTime DEFAULT now())"
                    " ENGINE = Memory")
                break
            except ClickHouseError as exc:
                if "already exists" not in str(exc).lower() and "ALREADY_EXISTS" not in str(exc):
                    raise
                if self._lock_age() > STALE_LOCK:
                    self.client.command(f"DROP TABLE IF EXISTS {LOCK_TABLE}")
                    continue
                if time.monotonic() > deadline:
                    raise MigrationError(
                        f"another runner holds the ClickHouse migration lock ({LOCK_TABLE}); "
                        "wait for it, or drop the table if that runner died") from exc
                time.sleep(0.2)
        try:
            yield
        finally:
            self.client.command(f"DROP TABLE IF EXISTS {LOCK_TABLE}")

    def _lock_age(self) -> float:
        rows = self.client.rows(
            "SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables"
            " WHERE database = currentDatabase() AND name = {t:String}", {"t": LOCK_TABLE})
        return float(rows[0][0]) if rows else 0.0

    def ensure_ledger(self) -> None:
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {LEDGER} ("
            " version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC'),"
            " duration_ms UInt32, applied_by String"
            ") ENGINE = MergeTree ORDER BY version")

    def applied(self) -> list[AppliedMigration]:
        exists = self.client.rows(
            "SELECT count() FROM system.tables WHERE database = currentDatabase()"
            " AND name = {t:String}", {"t": LEDGER})
        if not exists or exists[0][0] == 0:
            return []
        rows = self.client.rows(
            f"SELECT version, name, checksum, applied_at, duration_ms, applied_by FROM {LEDGER}"
            " ORDER BY version")
        return [AppliedMigration(int(v), n, c, _utc(a), int(d), b) for v, n, c, a, d, b in rows]

    def apply(self, migration: Migration, applied_by: str) -> int:
        if migration.down_path is None:
            raise MigrationError(
                f"{migration.path.name}: ClickHouse migrations need a .down.sql: it is how a "
                "migration that fails half-way is undone (ClickHouse DDL has no transactions)")
        started = time.monotonic()
        statements = self.statements(migration.sql)
        for index, sql in enumerate(statements):
            try:
                self.client.command(sql)
            except ClickHouseError as exc:
                self._undo(migration)
                raise MigrationError(
                    f"{migration.path.name} failed at statement {index + 1}: {exc}; "
                    "it was undone with its .down.sql and nothing was recorded") from exc
        duration = int((time.monotonic() - started) * 1000)
        self.client.command(
            f"INSERT INTO {LEDGER} (version, name, checksum, applied_at, duration_ms, applied_by)"
            " VALUES ({v:UInt32}, {n:String}, {c:String}, now64(3), {d:UInt32}, {b:String})",
            {"v": migration.version, "n": migration.name, "c": migration.checksum,
             "d": duration, "b": applied_by or _who()})
        return duration

    def _undo(self, migration: Migration) -> None:
        down = migration.down_sql() or ""
        for sql in self.statements(down):
            try:
                self.client.command(sql)
            except ClickHouseError:
                continue  # best effort: the down file is idempotent, keep going

    def revert(self, migration: Migration, down_sql: str) -> int:
        started = time.monotonic()
        for sql in self.statements(down_sql):
            self.client.command(sql)
        self.client.command(
            f"ALTER TABLE {LEDGER} DELETE WHERE version = {{v:UInt32}} SETTINGS mutations_sync = 2",
            {"v": migration.version})
        return int((time.monotonic() - started) * 1000)

    def dump_schema(self) -> str:
        rows = self.client.rows(
            "SELECT name, create_table_query FROM system.tables"
            " WHERE database = currentDatabase() AND name NOT IN ({l:String}, {k:String})"
            " ORDER BY name", {"l": LEDGER, "k": LOCK_TABLE})
        return "\n".join(f"-- {name}\n{query};\n" for name, query in rows)

    def close(self) -> None:
        if self.own_client:
            self.client.close()


def postgres_placeholders(url: str) -> dict[str, str]:
    """``${pg_*}`` values for the dictionaries, from the PostgreSQL URL."""
    parts = urlsplit(url)
    return {
        "pg_host": parts.hostname or "127.0.0.1",
        "pg_port": str(parts.port or 5432),
        "pg_user": unquote(parts.username or "postgres"),
        "pg_password": unquote(parts.password or "").replace("\\", "\\\\").replace("'", "\\'"),
        "pg_db": parts.path.lstrip("/") or "postgres",
    }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"

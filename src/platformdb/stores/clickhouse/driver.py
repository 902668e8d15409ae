"""The ClickHouse driver of the migration engine.

Same files, rules and ledger semantics as PostgreSQL, within what ClickHouse
offers:

- **Ledger**: ``platformdb_schema_migrations`` in the target database, append
  only: applying a migration inserts an ``up`` row, undoing it (``migrate
  down``) inserts a ``down`` row; nothing ever deletes or mutates a ledger
  row. A version is applied when its latest row (``seq``) is ``up``.
- **Lock**: ``CREATE TABLE platformdb_migration_lock`` is atomic (exactly
  one concurrent creator succeeds); the holder writes who it is into it and
  drops it when done. Another runner waits for it at most ``runner_wait_s``
  (:class:`~platformdb.migrate.options.MigrateOptions`) and then gives up
  naming the holder and since when. A lock older than :data:`STALE_LOCK` (a
  crashed runner) is broken.
- **No transactions**: ClickHouse DDL is not transactional. Before a
  migration runs, the driver records the database's objects; when a statement
  fails, it undoes only what this run created or altered: a ``DROP`` of the
  down file runs only for an object this run created, an ``ALTER`` for one it
  created or altered. A ``CREATE ... IF NOT EXISTS`` that found a table
  already there did not create it, so its data is never dropped, even when
  the migration then altered it (the alteration is undone). Nothing is
  recorded. Every ClickHouse migration therefore needs a down file.
- **Rendering**: :mod:`platformdb.stores.clickhouse.ddl` renders each file for the
  topology (single node, cluster, managed); ``${...}`` values (the dictionaries'
  least-privilege login and named collection, :func:`dictionary_placeholders`)
  are filled at apply time and never reach the ledger. On a cluster,
  Distributed tables must come after their local tables (checked before
  anything runs) and drops are ``SYNC``.
- **Validation**: every statement, as it will run and as a single node would
  run it, goes through ClickHouse's own parser (``formatQuery``) before
  anything runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from platformdb.clickhouse import ClickHouseError, translated
from platformdb.errors import MigrationError
from platformdb.migrate.base import AppliedMigration, Migration
from platformdb.migrate.engine import Migrator, who
from platformdb.migrate.options import MigrateOptions
from platformdb.migrate.planning import MigrationPlan
from platformdb.migrate.snapshot import SchemaState, Snapshot
from platformdb.stores.clickhouse.ddl import (
    Statement,
    Topology,
    check_order,
    cluster_clause,
    code_only,
    format_query,
    render,
    source_for,
    split,
)
from platformdb.stores.clickhouse.dictionaries import collection_name, ensure_collection
from platformdb.stores.clickhouse.plan import plan_statement
from platformdb.stores.clickhouse.snapshot import snapshot as ch_snapshot

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

log = logging.getLogger("platformdb.migrate")

LEDGER = "platformdb_schema_migrations"
LOCK_TABLE = "platformdb_migration_lock"
SCRATCH_SOURCE = {"pg_host": "127.0.0.1", "pg_port": "5432", "pg_user": "scratch",
                  "pg_password": "", "pg_db": "scratch"}
"""003's inline dictionary source in a scratch database (never connected to)."""
STALE_LOCK = 3600.0
LOCK_POLL = 0.2

_TARGET = re.compile(
    r"^\s*(?:DROP\s+(?:TABLE|VIEW|DICTIONARY)\s+(?:IF\s+EXISTS\s+)?|ALTER\s+TABLE\s+)"
    r"(?:`?\w+`?\.)?`?(?P<name>\w+)`?", re.I)


class ClickHouseDriver:
    """Migrations for one ClickHouse database (chDB or a server)."""

    store = "clickhouse"

    def __init__(self, client: Client,
                 placeholders: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                 topology: Topology | None = None,
                 on_close: Callable[[], None] | None = None,
                 options: MigrateOptions | None = None) -> None:
        self.client = client
        self.options = options or MigrateOptions()
        # a callable is resolved on first apply: status and health never need PostgreSQL
        self._placeholders = placeholders
        self.topology = topology or Topology.single(str(client.database))
        self._on_close = on_close

    # ---------------------------------------------------------- rendering

    @property
    def placeholders(self) -> dict[str, str]:
        if callable(self._placeholders):
            self._placeholders = dict(self._placeholders())
        return dict(self._placeholders or {})

    def statements(self, migration: Migration, down: bool = False, fill: bool = True,
                   topology: Topology | None = None) -> list[Statement]:
        """The statements to run for ``migration`` (or its down file), rendered."""
        where = topology or self.topology
        path = migration.down_path if down else migration.path
        text = (migration.down_sql() if down else migration.sql) or ""
        if path is not None:
            text = source_for(path, text, where)
        return render(text, where, self.placeholders if fill else None)

    # ------------------------------------------------------------- driver

    def ping(self) -> None:
        self._rows("SELECT 1")

    def validate(self, migration: Migration, text: str) -> None:
        down = text != migration.sql
        topologies = {self.topology, Topology.single(self.topology.database)}
        for topology in topologies:
            try:
                statements = self.statements(migration, down, fill=False, topology=topology)
            except MigrationError as exc:
                raise MigrationError(f"{_file(migration, down)}: {exc}") from exc
            for statement in statements:
                try:
                    with translated():
                        format_query(self.client, statement.text)
                except ClickHouseError as exc:
                    raise MigrationError(
                        f"{_file(migration, down)}:{statement.line}: {exc}") from exc

    @contextmanager
    def lock(self) -> Iterator[None]:
        wait = self.options.runner_wait_s
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                self._run(f"CREATE TABLE {LOCK_TABLE} (holder String, since DateTime DEFAULT now())"
                          " ENGINE = Memory")
                break
            except ClickHouseError as exc:
                if exc.name != "TABLE_ALREADY_EXISTS" and "already exists" not in str(exc):
                    raise
                if self._lock_age() > STALE_LOCK:
                    self._run(f"DROP TABLE IF EXISTS {LOCK_TABLE}")
                    continue
                holder = self._lock_holder()
                if time.monotonic() > deadline:
                    raise MigrationError(
                        f"another runner still holds the ClickHouse migration lock ({LOCK_TABLE})"
                        f" after {wait:g} s: {holder}; wait for it, or drop the table if that "
                        "runner died") from exc
                if not announced:
                    log.warning("waiting up to %g s for another ClickHouse migration runner: %s",
                                wait, holder)
                    announced = True
                time.sleep(LOCK_POLL)
        try:
            self._run("INSERT INTO {lock:Identifier} (holder) VALUES ({h:String})",
                      {"lock": LOCK_TABLE, "h": f"{who()} pid {os.getpid()}"})
            yield
        finally:
            self._run(f"DROP TABLE IF EXISTS {LOCK_TABLE}")

    def _lock_holder(self) -> str:
        """Who holds the lock and since when, as the holder wrote it."""
        try:
            rows = self._rows("SELECT holder, toString(since) FROM {lock:Identifier} LIMIT 1",
                              {"lock": LOCK_TABLE})
        except ClickHouseError:
            return "a runner that has just released it"
        if not rows:
            return f"a runner that is taking it now ({self._lock_age():.0f} s ago)"
        holder, since = rows[0]
        return f"{holder}, since {since} ({self._lock_age():.0f} s ago)"

    def _lock_age(self) -> float:
        rows = self._rows(
            "SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables"
            " WHERE database = currentDatabase() AND name = {t:String}", {"t": LOCK_TABLE})
        return float(rows[0][0]) if rows else 0.0

    def ensure_ledger(self) -> None:
        self._run(
            f"CREATE TABLE IF NOT EXISTS {LEDGER} ("
            " version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC'),"
            " duration_ms UInt32, applied_by String,"
            " action LowCardinality(String) DEFAULT 'up', seq UInt64 DEFAULT 0"
            ") ENGINE = MergeTree ORDER BY (version, seq)")
        # ledgers written before it was append-only: every row is an 'up'
        self._run(f"ALTER TABLE {LEDGER} ADD COLUMN IF NOT EXISTS action"
                  " LowCardinality(String) DEFAULT 'up'")
        self._run(f"ALTER TABLE {LEDGER} ADD COLUMN IF NOT EXISTS seq UInt64 DEFAULT 0")

    def _has_ledger(self) -> bool:
        return self._tables() >= {LEDGER}

    def _ledger_columns(self) -> set[str]:
        return {str(name) for (name,) in self._rows(
            "SELECT name FROM system.columns WHERE database = currentDatabase()"
            " AND table = {t:String}", {"t": LEDGER})}

    def applied(self) -> list[AppliedMigration]:
        if not self._has_ledger():
            return []
        if "seq" not in self._ledger_columns():  # written before the ledger was append-only
            rows = self._rows("SELECT version, name, checksum, applied_at, duration_ms,"
                              " applied_by, 'up' FROM {ledger:Identifier} ORDER BY version",
                              {"ledger": LEDGER})
        else:
            rows = self._rows(
                "SELECT version, argMax(name, k), argMax(checksum, k), argMax(applied_at, k),"
                " argMax(duration_ms, k), argMax(applied_by, k), argMax(action, k) FROM"
                " (SELECT *, (seq, applied_at) AS k FROM {ledger:Identifier})"
                " GROUP BY version HAVING argMax(action, k) IN ('up', 'baseline')"
                " ORDER BY version", {"ledger": LEDGER})
        return [AppliedMigration(int(v), str(n), str(c), _utc(a), int(d), str(b),
                                 baselined=str(k) == "baseline") for v, n, c, a, d, b, k in rows]

    def history(self) -> list[tuple[int, int, str, str]]:
        """Every ledger row, oldest first: (seq, version, name, action)."""
        if not self._has_ledger():
            return []
        return [(int(s), int(v), str(n), str(a)) for s, v, n, a in self._rows(
            "SELECT seq, version, name, action FROM {ledger:Identifier} ORDER BY seq, applied_at",
            {"ledger": LEDGER})]

    def _record(self, migration: Migration, action: str, duration: int, by: str) -> None:
        self._run(
            "INSERT INTO {ledger:Identifier} (version, name, checksum, applied_at, duration_ms,"
            " applied_by, action, seq) SELECT {v:UInt32}, {n:String}, {c:String}, now64(3),"
            " {d:UInt32}, {b:String}, {a:String}, (SELECT max(seq) + 1 FROM {ledger:Identifier})",
            {"ledger": LEDGER, "v": migration.version, "n": migration.name, "c": migration.checksum,
             "d": duration, "b": by, "a": action})

    def apply(self, migration: Migration, applied_by: str) -> int:
        if migration.down_path is None:
            raise MigrationError(
                f"{migration.path.name}: ClickHouse migrations need a .down.sql: it is how a "
                "migration that fails half-way is undone (ClickHouse DDL has no transactions)")
        started = time.monotonic()
        statements = self.statements(migration)
        before = self._objects()
        check_order(statements, before)
        for index, statement in enumerate(statements):
            try:
                self._run(statement.text)
            except ClickHouseError as exc:
                undone = self._undo(migration, before)
                raise MigrationError(
                    f"{migration.path.name} failed at statement {index + 1}: {exc}; "
                    f"{undone} and nothing was recorded") from exc
        duration = int((time.monotonic() - started) * 1000)
        self._record(migration, "up", duration, applied_by)
        return duration

    def _undo(self, migration: Migration, before: Mapping[str, str]) -> str:
        """Run the down statements that touch only what this run created or altered.

        A ``DROP`` runs only for an object this run created (absent before, or there
        with another UUID: dropped and made again); an ``ALTER`` for one it created or
        altered. So a table that ``CREATE ... IF NOT EXISTS`` adopted keeps its data even
        when the migration went on to alter it: only the alteration is undone.
        """
        after = self._objects()
        touched = {name for name, query in after.items() if before.get(name) != query}
        if not touched:
            return "it had changed nothing"
        created = {name for name in touched
                   if name not in before or _uuid(before[name]) != _uuid(after[name])}
        for statement in self.statements(migration, down=True):
            code = code_only(statement.text)
            target = _TARGET.match(code)
            if target is None:
                continue
            allowed = created if code.lstrip().upper().startswith("DROP") else touched
            if target["name"] not in allowed:
                continue
            try:
                self._run(statement.text)
            except ClickHouseError:
                continue  # best effort: keep undoing the rest
        left = self._objects()
        still = sorted(name for name in touched if left.get(name) != before.get(name)
                       and not (name in created and name not in left))
        if still:
            return f"it could not undo {', '.join(still)}"
        return f"what it created or altered ({', '.join(sorted(touched))}) was undone"

    def revert(self, migration: Migration, down_sql: str) -> int:
        started = time.monotonic()
        for statement in self.statements(migration, down=True):
            self._run(statement.text)
        duration = int((time.monotonic() - started) * 1000)
        self._record(migration, "down", duration, who())
        return duration

    def plan(self, migrations: list[Migration]) -> list[MigrationPlan]:
        """Each statement as it would run here, classified and sized (:mod:`.plan`)."""
        plans = []
        for migration in migrations:
            found = MigrationPlan(self.store, migration.version, migration.label, "statements")
            found.statements = [plan_statement(s, self._size)
                                for s in self.statements(migration, fill=False)]
            plans.append(found)
        return plans

    def _size(self, table: str) -> tuple[int, int, int] | None:
        if table not in self._tables():
            return None
        rows = self._rows(
            "SELECT sum(rows), sum(bytes_on_disk), count() FROM system.parts"
            " WHERE database = currentDatabase() AND table = {t:String} AND active",
            {"t": table})
        rows_, size, parts = rows[0] if rows else (0, 0, 0)
        return int(rows_ or 0), int(size or 0), int(parts or 0)

    # ------------------------------------------------------------ schema

    def snapshot(self) -> Snapshot:
        return ch_snapshot(lambda sql, params: self._rows(sql, params),
                           skip=(LEDGER, LOCK_TABLE))

    def expected_snapshot(self, migrations: list[Migration]) -> Snapshot:
        """What ``migrations`` build in a scratch database beside this one, dropped afterwards.

        The dictionaries are created reading the same named collection as this database's
        (nothing is created or changed for them), and 003's inline source with placeholder
        values: where a dictionary reads from is not part of the comparison.
        """
        live = str(self.client.database)
        scratch = f"platformdb_scratch_{uuid.uuid4().hex[:12]}"
        on = cluster_clause(self.topology)
        topology = Topology(self.topology.mode, self.topology.cluster, scratch)
        values = {**SCRATCH_SOURCE, "dictionary_source": collection_name(live)}
        self._run(f"CREATE DATABASE {scratch}{on}")
        try:
            self.client.database = scratch
            driver = ClickHouseDriver(self.client, values, topology)
            Migrator(driver, migrations).up()
            return driver.snapshot()
        finally:
            self.client.database = live
            self._run(f"DROP DATABASE IF EXISTS {scratch}{on} SYNC")

    def schema_state(self) -> SchemaState | None:
        """The fingerprint kept in the ledger's comment (metadata: no row, no mutation)."""
        rows = self._rows("SELECT comment FROM system.tables WHERE database = currentDatabase()"
                          " AND name = {t:String}", {"t": LEDGER})
        if not rows or not str(rows[0][0]).startswith("{"):
            return None
        try:
            found = json.loads(str(rows[0][0]))
            recorded = datetime.fromisoformat(found["recorded_at"])
            return SchemaState(found.get("fingerprint"), int(found["version"]), recorded,
                               str(found["recorded_by"]), str(found["note"]))
        except (ValueError, KeyError, TypeError):
            return None

    def record_schema_state(self, fingerprint: str | None, version: int, note: str) -> None:
        """Written as the ledger table's comment: the ledger's rows stay append-only and
        no table of its own is needed (managed ClickHouse has MergeTree tables only)."""
        state = json.dumps({"fingerprint": fingerprint, "version": version,
                            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                            "recorded_by": who(), "note": note})
        quoted = state.replace("\\", "\\\\").replace("'", "\\'")
        self._run(f"ALTER TABLE {LEDGER} MODIFY COMMENT '{quoted}'")

    def record_baseline(self, migrations: list[Migration], applied_by: str) -> None:
        for migration in migrations:
            self._record(migration, "baseline", 0, applied_by)

    def dump_schema(self) -> str:
        rows = self._rows(
            "SELECT name, create_table_query FROM system.tables"
            " WHERE database = currentDatabase() AND name NOT IN ({l:String}, {k:String})"
            " ORDER BY name", {"l": LEDGER, "k": LOCK_TABLE})
        return "\n".join(f"-- {name}\n{query};\n" for name, query in rows)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()

    # ------------------------------------------------------------ helpers

    def _objects(self) -> dict[str, str]:
        """Tables, views and dictionaries of the database: name -> definition."""
        return {str(name): f"{uuid} {query}" for name, uuid, query in self._rows(
            "SELECT name, toString(uuid), create_table_query FROM system.tables"
            " WHERE database = currentDatabase() AND name NOT IN ({l:String}, {k:String})",
            {"l": LEDGER, "k": LOCK_TABLE})}

    def _tables(self) -> set[str]:
        return {str(name) for (name,) in self._rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase()")}

    def _run(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with translated():
            self.client.command(sql, parameters=dict(params) if params else None)

    def _rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with translated():
            result = self.client.query(sql, parameters=dict(params) if params else None)
        return [tuple(row) for row in result.result_rows]


def dictionary_placeholders(client: Client, login_url: str,
                            topology: Topology | None = None) -> dict[str, str]:
    """The apply-time values of the dictionary migrations, for the dictionaries' login.

    ``${dictionary_source}`` (006 on): the named collection holding ``login_url``,
    created or updated here. ``${pg_*}`` (003): the same login's details, so a
    fresh database never has the owner's credentials written into its DDL, not even
    between 003 and 006. ``login_url`` is a least-privilege login
    (:mod:`platformdb.stores.clickhouse.dictionaries`), never the migration owner.
    """
    return {**postgres_placeholders(login_url),
            "dictionary_source": ensure_collection(client, login_url, topology)}


def postgres_placeholders(postgres_url: str) -> dict[str, str]:
    """``${pg_*}`` values for the dictionaries of migration 003, from a PostgreSQL URL."""
    parts = urlsplit(postgres_url)
    return {
        "pg_host": parts.hostname or "127.0.0.1",
        "pg_port": str(parts.port or 5432),
        "pg_user": unquote(parts.username or "postgres"),
        "pg_password": unquote(parts.password or "").replace("\\", "\\\\").replace("'", "\\'"),
        "pg_db": parts.path.lstrip("/") or "postgres",
    }


def _uuid(definition: str) -> str:
    """The UUID an :meth:`ClickHouseDriver._objects` value starts with."""
    return definition.split(" ", 1)[0]


def _file(migration: Migration, down: bool) -> str:
    path = migration.down_path if down and migration.down_path else migration.path
    return path.name


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


__all__ = ["LEDGER", "LOCK_TABLE", "ClickHouseDriver", "dictionary_placeholders",
           "postgres_placeholders", "split"]

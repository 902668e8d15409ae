"""Batched, resumable backfills: one UPDATE run over millions of rows without holding them.

A backfill is one ``UPDATE table SET ... [WHERE ...]`` run in batches: for each
leaf partition of ``table`` (the table itself when it is not partitioned), in
ranges of its primary key of ``batch_size`` rows, oldest key first. Each batch
is one short transaction that updates its key range *and* records how far the
backfill got in ``platformdb.backfills`` (name, partition, last key); so a
backfill killed at any moment resumes exactly after the last committed batch,
never redoing or skipping a row. Batches run under ``lock_timeout`` with the
engine's lock retries, with ``pause`` seconds between them so replicas and
autovacuum keep up.

Row-level security: a backfill must reach every tenant's rows, and the
partitions have RLS forced with no policy. It runs with ``row_security = off``
as a role that bypasses RLS (a superuser or a ``BYPASSRLS`` maintenance role,
as docs/SECURITY.md describes for cross-tenant maintenance); under any other
role PostgreSQL refuses the first batch ("query would be affected by
row-level security") instead of silently updating nothing, and the backfill
says so.

Rows inserted or updated by the application while a backfill runs are its
job: deploy the code that writes the new column first, then backfill the old
rows (expand / backfill / contract).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pglast
import psycopg
from pglast import ast
from pglast.stream import RawStream
from psycopg import sql
from psycopg.pq import TransactionStatus

from platformdb.errors import MigrationError
from platformdb.migrate.base import checksum
from platformdb.migrate.options import MigrateOptions, Progress
from platformdb.migrate.retry import RetriesExhausted, with_lock_retries
from platformdb.postgres import connect
from platformdb.stores.postgres.catalog import advisory_holders, describe_holders

DEFAULT_BATCH = 1000
TABLE = "platformdb.backfills"
TABLE_ID = sql.Identifier(*TABLE.split("."))


@dataclass
class BackfillReport:
    """What one run of a backfill did (a resumed run counts only its own batches)."""

    name: str
    table: str
    partitions: int = 0
    batches: int = 0
    rows_scanned: int = 0
    rows_updated: int = 0
    resumed: bool = False
    """Progress from an earlier run was found and continued."""
    done: bool = False
    seconds: float = 0.0


def backfill_settings(value: str) -> dict[str, Any]:
    """``batch-size=N pause=S`` (the directive's words) as keyword arguments."""
    found: dict[str, Any] = {}
    for word in value.split():
        key, sep, raw = word.partition("=")
        try:
            if key == "batch-size" and sep:
                found["batch_size"] = int(raw)
            elif key == "pause" and sep:
                found["pause"] = float(raw)
            else:
                raise ValueError(word)
        except ValueError as exc:
            raise MigrationError(f"backfill directive: {word!r} is not batch-size=N or "
                                 "pause=SECONDS") from exc
    if found.get("batch_size", DEFAULT_BATCH) < 1 or found.get("pause", 0.0) < 0:
        raise MigrationError("backfill directive: batch-size must be 1 or more, pause 0 or more")
    return found


def parse_update(text: str) -> Any:
    """The one UPDATE of a backfill, checked: one table, no FROM, no RETURNING, no WITH."""
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise MigrationError(f"backfill: {exc.args[0]}") from exc
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.UpdateStmt):
        raise MigrationError("a backfill is exactly one UPDATE statement")
    node: Any = statements[0].stmt
    if node.fromClause or node.returningClause or node.withClause:
        raise MigrationError("a backfill UPDATE has no FROM, RETURNING or WITH: each batch "
                             "updates its own key range of one table")
    if node.relation is None or not node.relation.inh:
        raise MigrationError("a backfill UPDATE names its table without ONLY")
    return node


def lock_key(name: str) -> int:
    """The advisory lock that keeps two runs of one backfill apart."""
    digest = hashlib.sha256(f"platformdb.backfill:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Backfill:
    def __init__(self, conn: psycopg.Connection[Any], name: str, update: str, batch_size: int,
                 pause: float, options: MigrateOptions, progress: Progress | None) -> None:
        self.conn = conn
        self.name = name
        self.text = update
        self.node = parse_update(update)
        self.batch_size = batch_size
        self.pause = pause
        self.options = options
        self.progress = progress
        self.checksum = checksum(update)
        relation: Any = self.node.relation
        self.table = (f"{relation.schemaname}.{relation.relname}" if relation.schemaname
                      else str(relation.relname))
        self.report = BackfillReport(name, self.table)
        self.scanned_total = 0
        self.estimate = 0

    # ----------------------------------------------------------- catalogue

    def check_table(self) -> None:
        """Refuse a table that does not exist before anything is recorded (its missing
        primary key would be the wrong thing to say)."""
        if self.conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone() == (None,):
            raise MigrationError(f"backfill {self.name}: table {self.table} does not exist")
        self.key_columns()

    def key_columns(self) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod)"
            "  FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            "  JOIN pg_attribute a ON a.attnum = k.attnum"
            " WHERE i.indrelid = to_regclass(%s) AND i.indisprimary AND a.attrelid = i.indrelid"
            " ORDER BY k.n", (self.table,)).fetchall()
        if not rows:
            raise MigrationError(f"backfill {self.name}: {self.table} has no primary key to "
                                 "batch by")
        return [(str(name), str(kind)) for name, kind in rows]

    def leaves(self) -> list[tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT t.relid::regclass::text, greatest(c.reltuples, 0)::bigint"
            "  FROM pg_partition_tree(to_regclass(%s)) AS t JOIN pg_class c ON c.oid = t.relid"
            " WHERE t.isleaf ORDER BY 1", (self.table,)).fetchall()
        if not rows:  # not partitioned (the tree lists partitions only): the table itself
            rows = self.conn.execute(
                "SELECT c.oid::regclass::text, greatest(c.reltuples, 0)::bigint FROM pg_class c"
                " WHERE c.oid = to_regclass(%s)", (self.table,)).fetchall()
        if not rows:
            raise MigrationError(f"backfill {self.name}: table {self.table} does not exist")
        return [(str(name), int(estimate)) for name, estimate in rows]

    # ----------------------------------------------------------- progress rows

    def prepare(self, restart: bool) -> None:
        with self.conn.transaction():
            if self.conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
                ddl = (resources.files("platformdb.stores.postgres") / "sql"
                       / "postgres_ledger.sql").read_text()
                self.conn.execute(ddl)
            if restart:
                self.conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(TABLE_ID),
                                  (self.name,))
            other = self.conn.execute(
                sql.SQL("SELECT checksum FROM {} WHERE name = %s LIMIT 1").format(TABLE_ID),
                (self.name,)).fetchone()
        if other is not None and str(other[0]) != self.checksum:
            raise MigrationError(
                f"backfill {self.name} was started with another UPDATE; give this one another "
                "name, or restart it from the beginning (--restart)")
        self.report.resumed = other is not None

    def state(self, partition: str) -> tuple[list[str] | None, bool, int]:
        row = self.conn.execute(sql.SQL(
            "SELECT last_key, done, rows_scanned FROM {} WHERE name = %s AND partition = %s"
        ).format(TABLE_ID), (self.name, partition)).fetchone()
        if row is None:
            return None, False, 0
        return (list(row[0]) if row[0] is not None else None), bool(row[1]), int(row[2])

    # ----------------------------------------------------------- batches

    def run(self) -> BackfillReport:
        started = time.monotonic()
        columns = self.key_columns()
        leaves = self.leaves()
        self.estimate = sum(estimate for _, estimate in leaves)
        self.report.partitions = len(leaves)
        for partition, _ in leaves:
            last, done, scanned = self.state(partition)
            self.scanned_total += scanned
            while not done:
                last, done = self.batch(partition, columns, last)
                if not done and self.pause:
                    time.sleep(self.pause)
        self.report.done = True
        self.report.seconds = time.monotonic() - started
        return self.report

    def _key(self, columns: list[tuple[str, str]]) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns))

    def _values(self, columns: list[tuple[str, str]], values: list[str]) -> sql.Composable:
        return sql.SQL("({})").format(sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(kind))
            for v, (_, kind) in zip(values, columns, strict=True)))

    def batch(self, partition: str, columns: list[tuple[str, str]],
              last: list[str] | None) -> tuple[list[str] | None, bool]:
        """Update the next key range of ``partition``; return the new last key and whether
        the partition is finished."""
        key = self._key(columns)
        after = (sql.SQL("{} > {}").format(key, self._values(columns, last)) if last is not None
                 else sql.SQL("true"))
        leaf = sql.SQL(partition)  # a regclass text from the catalogue, quoted by PostgreSQL
        as_text = sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(
            sql.SQL("{}::text").format(sql.Identifier(c)) for c, _ in columns))

        def attempt() -> tuple[list[str] | None, bool, int, int]:
            with self.conn.transaction():
                self.conn.execute("SELECT set_config('lock_timeout', %s, true),"
                                  " set_config('statement_timeout', %s, true)",
                                  (self.options.lock_timeout, self.options.statement_timeout))
                row = self.conn.execute(sql.SQL(
                    "SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {} LIMIT 1").format(
                    as_text, leaf, after, sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
                    sql.Literal(self.batch_size - 1))).fetchone()
                upper = list(row[0]) if row is not None else None
                within = after if upper is None else sql.SQL("{} AND {} <= {}").format(
                    after, key, self._values(columns, upper))
                if upper is None:
                    counted = self.conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                        leaf, within)).fetchone()
                    scanned = int(counted[0]) if counted else 0
                else:
                    scanned = self.batch_size
                updated = self.conn.execute(self.update(partition, within)).rowcount
                new_last = upper if upper is not None else last
                self.conn.execute(sql.SQL(
                    "INSERT INTO {} AS b (name, partition, checksum, last_key, done, batches,"
                    " rows_scanned, rows_updated) VALUES (%s, %s, %s, %s, %s, 1, %s, %s)"
                    " ON CONFLICT (name, partition) DO UPDATE SET last_key = EXCLUDED.last_key,"
                    " done = EXCLUDED.done, batches = b.batches + 1,"
                    " rows_scanned = b.rows_scanned + EXCLUDED.rows_scanned,"
                    " rows_updated = b.rows_updated + EXCLUDED.rows_updated, updated_at = now()"
                    ).format(TABLE_ID),
                    (self.name, partition, self.checksum, new_last, upper is None, scanned,
                     max(updated, 0)))
                return new_last, upper is None, scanned, max(updated, 0)

        try:
            new_last, done, scanned, updated = with_lock_retries(
                attempt, self.options, f"backfill {self.name} ({partition})")
        except RetriesExhausted as exc:
            raise MigrationError(
                f"backfill {self.name}: a batch of {partition} could not get its locks in "
                f"{exc.attempts.count} attempts ({exc.attempts.errors[-1]}); rerun it to resume"
            ) from exc.last
        except psycopg.errors.InsufficientPrivilege as exc:
            if "row-level security" in str(exc):
                raise MigrationError(
                    f"backfill {self.name}: row-level security applies to this role on "
                    f"{partition}; run backfills as a role that bypasses it (a superuser or a "
                    "BYPASSRLS maintenance role)") from exc
            raise MigrationError(f"backfill {self.name}: {exc}") from exc
        except psycopg.Error as exc:
            raise MigrationError(f"backfill {self.name} failed on {partition}: "
                                 f"{(exc.diag.message_primary or str(exc)).strip()}") from exc
        self.report.batches += 1
        self.report.rows_scanned += scanned
        self.report.rows_updated += updated
        self.scanned_total += scanned
        if self.progress is not None:
            self.progress(f"backfill {self.name}", self.scanned_total,
                          max(self.estimate, self.scanned_total))
        return new_last, done

    def update(self, partition: str, within: sql.Composable) -> sql.Composed:
        """The author's UPDATE aimed at one partition, limited to one key range."""
        node = parse_update(self.text)
        where = node.whereClause
        schema, _, table = partition.rpartition(".")
        node.relation = ast.RangeVar(schemaname=_unquote(schema) or None,
                                     relname=_unquote(table), inh=True, relpersistence="p",
                                     alias=node.relation.alias)
        node.whereClause = None
        head = sql.SQL(str(RawStream()(node)))
        if where is None:
            return sql.SQL("{} WHERE {}").format(head, within)
        condition = sql.SQL(str(RawStream()(where)))
        return sql.SQL("{} WHERE ({}) AND {}").format(head, condition, within)


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def run(conn: psycopg.Connection[Any], name: str, update: str, *,
        batch_size: int = DEFAULT_BATCH, pause: float = 0.0,
        options: MigrateOptions | None = None, progress: Progress | None = None,
        restart: bool = False) -> BackfillReport:
    """Run (or resume) backfill ``name`` on ``conn`` (autocommit): see the module's text."""
    if batch_size < 1:
        raise MigrationError("the batch size must be 1 or more")
    chosen = options or MigrateOptions()
    work = _Backfill(conn, name, update, batch_size, pause, chosen, progress or chosen.progress)
    key = lock_key(name)
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not got or not got[0]:
        holders = describe_holders(advisory_holders(conn, key))
        raise MigrationError(f"backfill {name} is running in another session: "
                             f"{holders or 'unknown'}")
    try:
        conn.execute("SET row_security = off")
        work.check_table()
        work.prepare(restart)
        return work.run()
    finally:
        if conn.closed:
            pass
        elif conn.info.transaction_status != TransactionStatus.IDLE:
            # interrupted mid-statement (Ctrl-C): the session is unusable; ending it
            # releases the lock and the setting, and the batches done so far are kept
            conn.close()
        else:
            conn.execute("RESET row_security")
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def backfill(url: str, name: str, update: str, **kwargs: Any) -> BackfillReport:
    """:func:`run` on a connection of its own to ``url``."""
    with connect(url, autocommit=True) as conn:
        return run(conn, name, update, **kwargs)


@dataclass(frozen=True)
class PartitionProgress:
    partition: str
    done: bool
    batches: int
    rows_scanned: int
    rows_updated: int
    last_key: list[str] | None


def progress_of(url: str, name: str) -> list[PartitionProgress]:
    """Where backfill ``name`` is, per partition (empty when it never ran)."""
    with connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
            return []
        rows = conn.execute(sql.SQL(
            "SELECT partition, done, batches, rows_scanned, rows_updated, last_key FROM {}"
            " WHERE name = %s ORDER BY partition").format(TABLE_ID), (name,)).fetchall()
    return [PartitionProgress(str(p), bool(d), int(b), int(s), int(u),
                              list(k) if k is not None else None) for p, d, b, s, u, k in rows]


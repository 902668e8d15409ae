"""Indexes built without blocking writes, partitioned tables too (``-- platformdb: online-index``).

PostgreSQL refuses ``CREATE INDEX CONCURRENTLY`` on a partitioned table, and
a plain ``CREATE INDEX`` on one blocks every write to every partition until
the whole index is built. For each ``CREATE INDEX`` of an ``online-index``
migration the engine instead does what PostgreSQL's documentation describes:

1. ``CREATE INDEX name ON ONLY parent (...)``: the parent's index, INVALID,
   built instantly (nothing to read);
2. for each partition: a partitioned one gets its own ``ON ONLY`` index and
   is handled the same way one level down (campaign_metrics is RANGE by
   month, then HASH by org); a leaf gets ``CREATE INDEX CONCURRENTLY`` (reads
   and writes go on), and
3. ``ALTER INDEX parent_index ATTACH PARTITION leaf_index`` (a brief lock);
   when every partition's index is attached, PostgreSQL marks the parent's
   index VALID, level by level.

On a plain table it is ``CREATE INDEX CONCURRENTLY``. Every step is
idempotent, so the directive is resumable: rerunning ``migrate up`` after an
interruption reuses what is there, drops an INVALID index that an
interrupted concurrent build left and builds it again, and attaches what is
not attached yet. Each DDL step runs under ``lock_timeout`` with the
engine's lock retries. Partition indexes are named
``<partition>_<index>`` (shortened with a hash beyond 63 bytes), so a rerun
finds them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import pglast
import psycopg
from pglast import ast
from pglast.stream import RawStream

from platformdb.errors import MigrationError
from platformdb.migrate.retry import Attempts

MAX_NAME = 63


class Runner(Protocol):
    """What the build needs from the driver: its connection and a retried statement."""

    conn: psycopg.Connection[Any]

    def run_sql(self, sql: str, line: int, attempts: Attempts | None = None) -> None:
        """Run one autocommit statement, retried on lock timeouts and deadlocks."""


def online_index_problem(node: Any) -> str:
    """Why ``node`` cannot be built by the online-index directive; empty when it can."""
    if not isinstance(node, ast.IndexStmt):
        return "an online-index migration holds only CREATE INDEX statements"
    if not node.idxname:
        return "name the index: a rerun finds it (and its partitions' indexes) by name"
    if node.relation is not None and not node.relation.inh:
        return "write CREATE INDEX ... ON the table, not ON ONLY: the directive does that part"
    return ""


def partition_index_name(partition: str, index: str) -> str:
    """The name of ``index``'s index on ``partition``: stable, at most 63 bytes."""
    name = f"{partition}_{index}"
    if len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name.encode()[:MAX_NAME - 9].decode(errors='ignore')}_{digest}"


def _variant(statement: str, *, table: tuple[str, str], name: str, only: bool = False,
             concurrently: bool = False) -> str:
    """``statement`` (a CREATE INDEX) aimed at ``table`` under ``name``."""
    node: Any = pglast.parse_sql(statement)[0].stmt
    node.relation = ast.RangeVar(schemaname=table[0], relname=table[1], inh=not only,
                                 relpersistence="p")
    node.idxname = name
    node.concurrent = concurrently
    node.if_not_exists = False
    return str(RawStream()(node))


def _one(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _relation(conn: psycopg.Connection[Any], name: str) -> tuple[int, str, str, str] | None:
    row = conn.execute(
        "SELECT c.oid, c.relkind, n.nspname, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (name,)).fetchone()
    return (int(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None


def _children(conn: psycopg.Connection[Any], table: int) -> list[tuple[int, str, str, str]]:
    rows = conn.execute(
        "SELECT c.oid, c.relkind, n.nspname, c.relname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE i.inhparent = %s ORDER BY c.relname", (table,)).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def _attached(conn: psycopg.Connection[Any], index: int, table: int) -> int | None:
    """The index on ``table`` already attached to ``index``."""
    found = _one(conn, "SELECT i.inhrelid FROM pg_inherits i JOIN pg_index x"
                       " ON x.indexrelid = i.inhrelid WHERE i.inhparent = %s AND x.indrelid = %s",
                 (index, table))
    return int(found) if found is not None else None


def _index(conn: psycopg.Connection[Any], schema: str, name: str) -> tuple[int, bool] | None:
    row = conn.execute("SELECT x.indexrelid, x.indisvalid FROM pg_index x"
                       " WHERE x.indexrelid = to_regclass(%s)",
                       (f'"{schema}"."{name}"',)).fetchone()
    return (int(row[0]), bool(row[1])) if row else None


def _quoted(schema: str, name: str) -> str:
    return f"{_ident(schema)}.{_ident(name)}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _leaves(conn: psycopg.Connection[Any], table: int) -> int:
    return int(_one(conn, "SELECT count(*) FROM pg_partition_tree(%s) WHERE isleaf",
                    (table,)) or 0)


class _Build:
    """One online index: the statement as written, and how far the build got."""

    def __init__(self, runner: Runner, statement: str, line: int, attempts: Attempts | None,
                 index: str, progress: Any) -> None:
        self.runner = runner
        self.conn = runner.conn
        self.statement = statement
        self.line = line
        self.attempts = attempts
        self.index = index
        self.progress = progress
        self.done = 0
        self.total = 0

    def run(self, sql: str) -> None:
        self.runner.run_sql(sql, self.line, self.attempts)

    def partitioned(self, table: int, index: int) -> None:
        """Give every partition of ``table`` an index attached to ``index``, depth first."""
        for oid, relkind, schema, name in _children(self.conn, table):
            if _attached(self.conn, index, oid) is not None and relkind != "p":
                self._advance()
                continue
            own = partition_index_name(name, self.index)
            if relkind == "p":
                child = _attached(self.conn, index, oid)
                if child is None:
                    child = self._only_index(schema, name, own)
                    self.partitioned(oid, child)
                    self.run(f"ALTER INDEX {self._regclass(index)} ATTACH PARTITION"
                             f" {_quoted(schema, own)}")
                else:
                    self.partitioned(oid, child)
                continue
            self._leaf(schema, name, own)
            self.run(f"ALTER INDEX {self._regclass(index)} ATTACH PARTITION {_quoted(schema, own)}")
            self._advance()

    def _only_index(self, schema: str, table: str, name: str) -> int:
        if _index(self.conn, schema, name) is None:
            self.run(_variant(self.statement, table=(schema, table), name=name, only=True))
        found = _index(self.conn, schema, name)
        assert found is not None
        return found[0]

    def _leaf(self, schema: str, table: str, name: str) -> None:
        """A valid index named ``name`` on leaf ``table``, built concurrently."""
        found = _index(self.conn, schema, name)
        if found is not None and found[1]:
            return
        if found is not None:  # an interrupted concurrent build left it INVALID
            self.run(f"DROP INDEX CONCURRENTLY IF EXISTS {_quoted(schema, name)}")
        self.run(_variant(self.statement, table=(schema, table), name=name, concurrently=True))
        built = _index(self.conn, schema, name)
        if built is None or not built[1]:
            raise MigrationError(f"line {self.line}: the index {name} on {schema}.{table} was"
                                 " built but is INVALID; rerun migrate up to build it again")

    def _regclass(self, oid: int) -> str:
        return str(_one(self.conn, "SELECT %s::regclass::text", (oid,)))

    def _advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(f"online index {self.index}", self.done, self.total)


def build(runner: Runner, statement: str, line: int, attempts: Attempts | None = None,
          progress: Any = None) -> None:
    """Build the index of ``statement`` (a CREATE INDEX) without blocking writes."""
    node: Any = pglast.parse_sql(statement)[0].stmt
    problem = online_index_problem(node)
    if problem:
        raise MigrationError(f"line {line}: {problem}")
    assert node.relation is not None
    table_name = (f"{node.relation.schemaname}.{node.relation.relname}"
                  if node.relation.schemaname else str(node.relation.relname))
    table = _relation(runner.conn, table_name)
    if table is None:
        raise MigrationError(f"line {line}: table {table_name} does not exist")
    oid, relkind, schema, name = table
    index = str(node.idxname)
    work = _Build(runner, statement, line, attempts, index, progress)
    if relkind != "p":
        work._leaf(schema, name, index)
        return
    existing = _index(runner.conn, schema, index)
    if existing is not None and existing[1]:
        return
    work.total = _leaves(runner.conn, oid)
    parent = work._only_index(schema, name, index)
    work.partitioned(oid, parent)
    final = _index(runner.conn, schema, index)
    if final is None or not final[1]:
        raise MigrationError(
            f"line {line}: {schema}.{index} is still INVALID after every partition's index was"
            " attached; a partition has an index PostgreSQL did not accept as matching")


def build_online(driver: Any, statement: Any, attempts: Attempts | None = None) -> None:
    """The driver's entry point: one statement (``.sql``, ``.line``) of an online-index file."""
    build(driver, statement.sql, statement.line, attempts, driver.options.progress)

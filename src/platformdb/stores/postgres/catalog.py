"""Live facts a migration run asks PostgreSQL's catalogue: sizes, column types, lock holders.

Everything here is a read-only query on one connection; nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class RelationInfo:
    """A relation as it is now: what it is and how big (partitions summed)."""

    name: str
    exists: bool
    kind: str = ""
    """``table``, ``partitioned table``, ``view``, ``index``, ``partitioned index``..."""
    rows: int | None = None
    """Estimated rows (``reltuples`` of the leaves); None when a leaf that holds data was
    never analysed or vacuumed."""
    bytes: int = 0
    """Table, indexes and TOAST, every partition included."""
    partitions: int = 0
    """Leaf partitions (0 for a table that is not partitioned)."""
    has_default: bool = False
    """A partitioned table with a DEFAULT partition."""
    default_rows: int | None = None

    @property
    def partitioned(self) -> bool:
        return self.kind in ("partitioned table", "partitioned index")

    @property
    def empty(self) -> bool:
        return self.exists and self.rows == 0


_KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view",
          "i": "index", "I": "partitioned index", "S": "sequence", "f": "foreign table"}

RELATION_SQL = """
WITH target AS (SELECT to_regclass(%s) AS oid),
members AS (
    SELECT t.relid, t.isleaf FROM target, pg_partition_tree(target.oid) AS t
    UNION  -- pg_partition_tree() is empty for a table that is not partitioned
    SELECT c.oid, true FROM target JOIN pg_class c ON c.oid = target.oid
     WHERE c.relkind IN ('r', 'm', 'i', 'S', 'f')
),
tree AS (
    SELECT m.relid, m.isleaf, c.reltuples, c.relpages, c.relkind
      FROM members m JOIN pg_class c ON c.oid = m.relid
)
SELECT c.relkind,
       CASE WHEN bool_and(tree.reltuples >= 0 OR pg_relation_size(tree.relid) = 0)
                 FILTER (WHERE tree.isleaf)
            THEN (sum(greatest(tree.reltuples, 0)) FILTER (WHERE tree.isleaf))::bigint END,
       coalesce(sum(pg_total_relation_size(tree.relid)) FILTER (WHERE tree.isleaf), 0)::bigint,
       count(*) FILTER (WHERE tree.isleaf AND tree.relid <> c.oid),
       EXISTS (SELECT FROM pg_partitioned_table p WHERE p.partrelid = c.oid
                 AND p.partdefid <> 0)
  FROM target JOIN pg_class c ON c.oid = target.oid
  LEFT JOIN tree ON true
 GROUP BY c.oid, c.relkind
"""

DEFAULT_ROWS_SQL = """
SELECT CASE WHEN d.reltuples >= 0 OR pg_relation_size(d.oid) = 0
            THEN greatest(d.reltuples, 0)::bigint END
  FROM pg_partitioned_table p JOIN pg_class d ON d.oid = p.partdefid
 WHERE p.partrelid = to_regclass(%s)
"""


def relation(conn: psycopg.Connection[Any], name: str) -> RelationInfo:
    """Size and kind of ``name`` (as written in a statement, resolved on the search_path)."""
    try:
        row = conn.execute(RELATION_SQL, (name,)).fetchone()
    except psycopg.errors.InvalidName:
        return RelationInfo(name, False)
    if row is None:
        return RelationInfo(name, False)
    relkind, rows, size, partitions, has_default = row
    default_rows = None
    if has_default:
        found = conn.execute(DEFAULT_ROWS_SQL, (name,)).fetchone()
        default_rows = int(found[0]) if found and found[0] is not None else None
    return RelationInfo(name, True, _KINDS.get(str(relkind), str(relkind)),
                        int(rows) if rows is not None else None, int(size), int(partitions),
                        bool(has_default), default_rows)


def column_type(conn: psycopg.Connection[Any], table: str, column: str) -> str | None:
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
        (table, column)).fetchone()
    return str(row[0]) if row else None


def checks_on_column(conn: psycopg.Connection[Any], table: str, column: str) -> list[str]:
    """Validated CHECK constraints of ``table`` that read ``column`` (re-checked on a type
    change even when no row is rewritten)."""
    rows = conn.execute(
        "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a"
        "  ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
        " WHERE c.conrelid = to_regclass(%s) AND c.contype = 'c' AND c.convalidated"
        "   AND a.attname = %s ORDER BY 1", (table, column)).fetchall()
    return [str(r[0]) for r in rows]


def indexes_on_column(conn: psycopg.Connection[Any], table: str, column: str) -> list[str]:
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a"
        "  ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
        " WHERE i.indrelid = to_regclass(%s) AND a.attname = %s ORDER BY 1",
        (table, column)).fetchall()
    return [str(r[0]) for r in rows]


def not_null_proven(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """A validated ``CHECK (column IS NOT NULL)`` exists: SET NOT NULL then skips its scan."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass(%s)"
        " AND contype = 'c' AND convalidated"
        " AND pg_get_constraintdef(oid) = format('CHECK ((%%I IS NOT NULL))', %s::text))",
        (table, column)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Holder:
    """A session holding a lock someone waits for, from pg_locks and pg_stat_activity."""

    pid: int
    user: str
    application: str
    client: str
    state: str
    since: datetime | None
    """When its transaction began (or its connection, for a session lock)."""
    mode: str
    relation: str
    query: str

    def describe(self) -> str:
        since = f" since {self.since.isoformat(timespec='seconds')}" if self.since else ""
        app = f", application {self.application!r}" if self.application else ""
        on = f" on {self.relation}" if self.relation else ""
        query = " ".join(self.query.split())[:160]
        return (f"pid {self.pid} (user {self.user}{app}, client {self.client}, {self.state}"
                f"{since}) holds {self.mode}{on}; its query: {query or '-'}")


def describe_holders(holders: list[Holder], limit: int = 3) -> str:
    """One clause per session (its locks on several relations, e.g. every partition, merged)."""
    sessions: dict[int, list[Holder]] = {}
    for holder in holders:
        sessions.setdefault(holder.pid, []).append(holder)
    parts = []
    for found in list(sessions.values())[:limit]:
        first = found[0]
        relations = [h.relation for h in found if h.relation]
        shown = ", ".join(relations[:3]) + (f" and {len(relations) - 3} more" if len(
            relations) > 3 else "")
        modes = ", ".join(sorted({h.mode for h in found}))
        text = Holder(first.pid, first.user, first.application, first.client, first.state,
                      first.since, modes, shown, first.query).describe()
        parts.append(text)
    more = f" (and {len(sessions) - limit} more sessions)" if len(sessions) > limit else ""
    return "; ".join(parts) + more


HOLDERS_SQL = """
SELECT DISTINCT ON (a.pid, l.mode, l.relation)
       a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''),
       coalesce(host(a.client_addr), 'local'), coalesce(a.state, ''),
       coalesce(a.xact_start, a.backend_start), l.mode,
       coalesce(l.relation::regclass::text, ''), coalesce(a.query, '')
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND {where}
 ORDER BY a.pid, l.mode, l.relation
"""


def relation_holders(conn: psycopg.Connection[Any], names: list[str]) -> list[Holder]:
    """Other sessions holding any lock on ``names`` or their partitions."""
    if not names:
        return []
    where = ("l.locktype = 'relation' AND l.relation IN ("
             "SELECT to_regclass(n) FROM unnest(%s::text[]) AS n UNION SELECT t.relid"
             " FROM unnest(%s::text[]) AS n, pg_partition_tree(to_regclass(n)) AS t)")
    try:
        rows = conn.execute(HOLDERS_SQL.format(where=where), (names, names)).fetchall()
    except psycopg.Error:
        return []
    return [Holder(*row) for row in rows]


def advisory_holders(conn: psycopg.Connection[Any], key: int) -> list[Holder]:
    """Sessions holding the session advisory lock ``key`` (a bigint key)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    where = ("l.locktype = 'advisory' AND l.classid = %s::bigint::oid"
             " AND l.objid = %s::bigint::oid AND l.objsubid = 1")
    rows = conn.execute(HOLDERS_SQL.format(where=where),
                        (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchall()
    return [Holder(*row) for row in rows]

"""One org in PostgreSQL: its tables, sizes, export (COPY TO), delete and import (COPY FROM).

Every statement runs inside a tenant-scoped transaction (``set_tenant`` through
:func:`platformdb.postgres.tenant_transaction`), so an owner without
``BYPASSRLS`` still sees exactly the org's rows. Listing every org's size needs
the owner with ``BYPASSRLS`` (or a superuser), like other maintenance.

SQL text is built with :mod:`psycopg.sql` from table names read from the
catalog; values are parameters (``%s``) or, in ``COPY`` (which takes no
parameters), :class:`psycopg.sql.Literal`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from platformdb.errors import ValidationError, one_line
from platformdb.postgres import connect, tenant_transaction
from platformdb.stores.base import Org, Size, TenantPart, compare
from platformdb.tenant.archive import HashingWriter

ORGS = "organizations"
AUDIT = "audit_logs"
ERASED = "TENANT_ERASED"
IMPORT_SETTING = "platformdb.tenant_import"
"""The transaction-local setting naming the org being imported: its rows write no fresh
audit rows (honoured for the owner that runs migrations only; migration 010)."""
IMPORT_MIGRATION = 10
"""The ``audit_logs.action`` of the one row ``tenant delete`` leaves behind."""
COPY_OPTIONS = sql.SQL("(FORMAT csv, HEADER true)")


@dataclass(frozen=True)
class Table:
    name: str
    column: str
    """The column holding the org: ``id`` for organizations, ``org_id`` elsewhere."""

    def where(self, org: uuid.UUID) -> sql.Composable:
        """``WHERE <column> = '<org>'`` (erasure records excluded from audit_logs)."""
        clause = sql.SQL("WHERE {} = {}").format(sql.Identifier(self.column),
                                                 sql.Literal(str(org)))
        if self.name == AUDIT:
            clause = sql.SQL("{} AND action <> {}").format(clause, sql.Literal(ERASED))
        return clause


def tables(conn: psycopg.Connection[Any]) -> list[Table]:
    """Every tenant table of schema ``public``, parents before children (foreign keys)."""
    names = [str(name) for (name,) in conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        "   AND (c.relname = %s OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
        "        WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped))"
        " ORDER BY c.relname", (ORGS,)).fetchall()]
    edges = conn.execute(
        "SELECT DISTINCT child.relname, parent.relname FROM pg_catalog.pg_constraint f"
        " JOIN pg_catalog.pg_class child ON child.oid = f.conrelid"
        " JOIN pg_catalog.pg_class parent ON parent.oid = f.confrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = child.relnamespace"
        " WHERE f.contype = 'f' AND n.nspname = 'public' AND f.conparentid = 0").fetchall()
    parents: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in edges:
        if child in parents and parent in parents and child != parent:
            parents[str(child)].add(str(parent))
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:  # a cycle: keep the remaining ones in name order
            ready = [n for n in names if n not in ordered]
        ordered.append(ready[0])
    return [Table(n, "id" if n == ORGS else "org_id") for n in ordered]


@contextmanager
def snapshot(url: str, org: uuid.UUID) -> Iterator[psycopg.Connection[Any]]:
    """A read-only REPEATABLE READ transaction scoped to ``org``: one snapshot of it."""
    with connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with tenant_transaction(conn, org) as scoped:
            yield scoped


# ------------------------------------------------------------------ finding orgs


def find_org(url: str, ref: str) -> Org | None:
    """The org whose id or slug is ``ref`` (an id is found without its organizations row)."""
    try:
        org_id = uuid.UUID(ref)
    except ValueError:
        with connect(url) as conn:
            row = conn.execute("SELECT id, slug, name, status FROM public.organizations"
                               " WHERE slug = %s", (ref,)).fetchone()
        return None if row is None else Org(row[0], row[1], row[2], row[3])
    with snapshot(url, org_id) as conn:
        row = conn.execute("SELECT id, slug, name, status FROM public.organizations"
                           " WHERE id = %s", (org_id,)).fetchone()
    if row is not None:
        return Org(row[0], row[1], row[2], row[3])
    return Org(org_id, None, None, None)


def all_orgs(url: str) -> list[Org]:
    with connect(url) as conn:
        found = conn.execute("SELECT id, slug, name, status FROM public.organizations"
                             " ORDER BY slug").fetchall()
        orphans = set()
        for table in tables(conn):
            if table.name != ORGS:
                orphans |= {row[0] for row in conn.execute(sql.SQL(
                    "SELECT DISTINCT org_id FROM {} o WHERE NOT EXISTS (SELECT 1 FROM"
                    " public.organizations p WHERE p.id = o.org_id){}").format(
                    sql.Identifier(table.name),
                    sql.SQL(" AND o.action <> {}").format(sql.Literal(ERASED))
                    if table.name == AUDIT else sql.SQL(""))).fetchall()}
    return [Org(r[0], r[1], r[2], r[3]) for r in found] + [
        Org(o, None, None, None) for o in sorted(orphans)]


# ------------------------------------------------------------------ sizes


def sizes(url: str, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, tuple[int, int]]]:
    """``{org: {table: (rows, bytes)}}``; bytes are the table's size times the org's share
    of its rows (an estimate: PostgreSQL keeps no per-tenant size)."""
    found: dict[uuid.UUID, dict[str, tuple[int, int]]] = {}
    with connect(url) as conn:
        for table in tables(conn):
            total_bytes = int(conn.execute(
                "SELECT coalesce(sum(pg_catalog.pg_total_relation_size(relid)), 0)"
                " FROM pg_catalog.pg_partition_tree(%s::regclass)",
                (f"public.{table.name}",)).fetchone()[0])  # type: ignore[index]
            where = sql.SQL("") if org is None else table.where(org)
            if org is None and table.name == AUDIT:
                where = sql.SQL("WHERE action <> {}").format(sql.Literal(ERASED))
            counts = conn.execute(sql.SQL("SELECT {col}, count(*) FROM {t} {where} GROUP BY 1")
                                  .format(col=sql.Identifier(table.column),
                                          t=sql.Identifier(table.name), where=where)).fetchall()
            all_rows = sum(int(n) for _, n in counts) if org is None else int(conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
            ).fetchone()[0])  # type: ignore[index]
            for key, n in counts:
                share = int(total_bytes * int(n) / all_rows) if all_rows else 0
                found.setdefault(key, {})[table.name] = (int(n), share)
    return found


def activity(url: str, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime]:
    """The latest audit, created or updated time per org."""
    where = sql.SQL("") if org is None else sql.SQL("WHERE org_id = {}").format(
        sql.Literal(str(org)))
    query = sql.SQL(
        "SELECT org_id, max(t) FROM ("
        " SELECT id AS org_id, greatest(created_at, updated_at) AS t FROM public.organizations"
        " UNION ALL SELECT org_id, max(created_at) FROM public.audit_logs {w} GROUP BY 1"
        " UNION ALL SELECT org_id, max(updated_at) FROM public.campaigns {w} GROUP BY 1"
        ") a {w} GROUP BY 1").format(w=where)
    with connect(url) as conn:
        return {row[0]: row[1] for row in conn.execute(query).fetchall() if row[1] is not None}


# ------------------------------------------------------------------ export


def export(url: str, org: uuid.UUID, folder: Path) -> tuple[dict[str, int], int]:
    """Every tenant table's rows of ``org`` as ``folder/<table>.csv`` from ONE snapshot,
    and the schema head that snapshot saw."""
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with snapshot(url, org) as conn:
        schema = head(conn)
        for table in tables(conn):
            statement = sql.SQL("COPY (SELECT * FROM {} {}) TO STDOUT {}").format(
                sql.Identifier(table.name), table.where(org), COPY_OPTIONS)
            with HashingWriter(folder / f"{table.name}.csv") as out, conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    for chunk in copy:
                        out.write(chunk)
                counts[table.name] = max(cur.rowcount, 0)
    return counts, schema


def head(conn: psycopg.Connection[Any]) -> int:
    """The highest applied migration of the ledger (0 on a database never migrated)."""
    row = conn.execute("SELECT to_regclass('platformdb.schema_migrations') IS NOT NULL"
                       ).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT coalesce(max(version), 0) FROM platformdb.schema_migrations"
                         ).fetchone()
    return int(found[0]) if found else 0


def schema_head(url: str) -> int:
    with connect(url) as conn:
        return head(conn)


# ------------------------------------------------------------------ delete


def delete_rows(conn: psycopg.Connection[Any], org: uuid.UUID, *,
                keep_audit: bool) -> dict[str, int]:
    """Delete ``org``'s rows, children first, on a transaction the caller holds open."""
    removed: dict[str, int] = {}
    ordered = tables(conn)
    for table in reversed([t for t in ordered if t.name != AUDIT]):
        cur = conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
            sql.Identifier(table.name), sql.Identifier(table.column)), (org,))
        removed[table.name] = max(cur.rowcount, 0)
    if not keep_audit and any(t.name == AUDIT for t in ordered):
        # after the tables: their DELETE audit rows, written just now, go too
        cur = conn.execute("DELETE FROM public.audit_logs WHERE org_id = %s AND action <> %s",
                           (org, ERASED))
        removed[AUDIT] = max(cur.rowcount, 0)
    return removed


def delete(url: str, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
    """Remove ``org`` in ONE transaction; leaves one ``TENANT_ERASED`` audit row when it
    removed anything (a re-run that finds nothing writes none)."""
    with connect(url) as conn, tenant_transaction(conn, org):
        removed = delete_rows(conn, org, keep_audit=keep_audit)
        if sum(removed.values()):
            conn.execute("SELECT public.log_audit_event(%s, 'organizations', %s, %s::jsonb)",
                         (ERASED, str(org), json.dumps({"removed": removed,
                                                        "audit_kept": keep_audit},
                                                       sort_keys=True)))
    return removed


# ------------------------------------------------------------------ import


def check_rows(folder: Path, org: uuid.UUID, order: list[str]) -> None:
    """Every row of ``folder/<table>.csv`` belongs to ``org`` (``org_id``, or ``id`` in
    organizations); the first that does not refuses the archive, naming file and line."""
    wanted = str(org)
    for name in order:
        column = "id" if name == ORGS else "org_id"
        path = folder / f"{name}.csv"
        where = f"postgresql/{name}.csv"
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                continue
            if column not in header:
                raise ValidationError(f"{where} has no {column} column; refusing to import "
                                      "(nothing was changed)")
            at = header.index(column)
            for row in reader:
                if len(row) != len(header):
                    raise ValidationError(
                        f"{where} line {reader.line_num}: {len(row)} fields, its header has "
                        f"{len(header)}; refusing the whole archive (nothing was changed)")
                if row[at] != wanted:
                    raise ValidationError(
                        f"{where} line {reader.line_num}: {column} {row[at]!r} is not the "
                        f"archive's org {wanted}; refusing the whole archive (nothing was "
                        "changed)")


@contextmanager
def loading(url: str, org: uuid.UUID, folder: Path, order: list[str], *,
            replace: bool) -> Iterator[dict[str, int]]:
    """Load ``folder/<table>.csv`` into ONE open transaction; committed when the block
    exits normally, rolled back when it raises (the caller loads the other stores inside).

    Every row is checked to be ``org``'s first (:func:`check_rows`). Foreign keys, CHECK
    constraints, row-level security and triggers stay on; the transaction names the org
    in ``platformdb.tenant_import``, so the audit trigger writes no fresh row for the
    org's rows (migration 010 honours it for the owner that runs migrations only) and the
    org's exported trail loads as it is. No superuser needed.
    """
    with connect(url, autocommit=True) as conn:  # the tenant transaction is the only one
        known = {t.name: t for t in tables(conn)}
        for name in order:
            if name not in known:
                raise ValidationError(f"the archive holds table {name}, which this deployment "
                                      "does not have")
        if head(conn) < IMPORT_MIGRATION:
            raise ValidationError(f"tenant import needs PostgreSQL migration "
                                  f"{IMPORT_MIGRATION:03d} (the import path of the audit "
                                  "trigger); run `platformdb migrate up` first")
        check_rows(folder, org, order)
        row = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles"
                           " WHERE rolname = current_user").fetchone()
        direct = bool(row and row[0])
        with tenant_transaction(conn, org):
            conn.execute("SELECT pg_catalog.set_config(%s, %s, true)",
                         (IMPORT_SETTING, str(org)))
            if replace:
                delete_rows(conn, org, keep_audit=False)
            loaded: dict[str, int] = {}
            for name in order:
                loaded[name] = _copy_in(conn, name, folder / f"{name}.csv", direct=direct)
            yield loaded


def _copy_in(conn: psycopg.Connection[Any], table: str, path: Path, *, direct: bool) -> int:
    """``path`` into ``table``: by ``COPY`` when the login bypasses row-level security
    (``direct``), else (``COPY FROM`` refuses tables with RLS) by ``COPY`` into a temporary
    table and ``INSERT ... SELECT``, which the tenant policies check row by row."""
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.strip():
            return 0
        columns = sql.SQL(", ").join(
            sql.Identifier(c) for c in next(csv.reader(io.StringIO(header.decode()))))
        handle.seek(0)
        target = sql.Identifier(table)
        if not direct:
            target = sql.Identifier(f"platformdb_import_{table}")
            conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} (LIKE public.{}) ON COMMIT DROP")
                         .format(target, sql.Identifier(table)))
        statement = sql.SQL("COPY {} ({}) FROM STDIN {}").format(target, columns, COPY_OPTIONS)
        try:
            with conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        copy.write(block)
                if not direct:
                    cur.execute(sql.SQL("INSERT INTO public.{} ({}) SELECT {} FROM {}").format(
                        sql.Identifier(table), columns, columns, target))
                return max(cur.rowcount, 0)
        except (psycopg.errors.IntegrityError, psycopg.errors.InsufficientPrivilege,
                psycopg.errors.DataError) as exc:
            # a foreign key, CHECK, unique key or row-level security refused a row
            raise ValidationError(f"postgresql/{table}.csv: {one_line(str(exc))}; refusing the "
                                  "whole archive (nothing was changed)") from exc


def counts(conn: psycopg.Connection[Any], org: uuid.UUID) -> dict[str, int]:
    found = {}
    for table in tables(conn):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {} {}").format(
            sql.Identifier(table.name), table.where(org))).fetchone()
        found[table.name] = int(row[0]) if row else 0
    return found


def row_counts(url: str, org: uuid.UUID) -> dict[str, int]:
    with snapshot(url, org) as conn:
        return counts(conn, org)


# ------------------------------------------------------------------ checksums


def checksums(url: str, org: uuid.UUID) -> dict[str, str]:
    """A digest of each tenant table's rows of ``org`` (every column, rows in order)."""
    digests = {}
    with snapshot(url, org) as conn:
        for table in tables(conn):
            rows = conn.execute(sql.SQL(
                "SELECT md5(string_agg(r::text, E'\\n' ORDER BY r::text)) FROM"
                " (SELECT t AS r FROM {} t {}) s").format(
                sql.Identifier(table.name), table.where(org))).fetchone()
            value = "" if rows is None or rows[0] is None else str(rows[0])
            digests[table.name] = hashlib.sha256(value.encode()).hexdigest()[:16]
    return digests


# ------------------------------------------------------------------ the store's facet


class PostgresTenant:
    """Orgs' data in PostgreSQL (:class:`platformdb.stores.base.TenantData`), which also
    keeps the org directory (``organizations``)."""

    unit = "rows"
    activity_label = "latest_activity"

    def __init__(self, url: str) -> None:
        self.url = url

    def orgs(self) -> list[Org]:
        return all_orgs(self.url)

    def find_org(self, ref: str) -> Org | None:
        return find_org(self.url, ref)

    def sizes(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, Size]]:
        return {key: {name: Size(n, b) for name, (n, b) in found.items()}
                for key, found in sizes(self.url, org).items()}

    def activity(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime | date]:
        found: dict[uuid.UUID, datetime | date] = dict(activity(self.url, org))
        return found

    def counts(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        found = row_counts(self.url, org)
        if keep_audit:
            found.pop(AUDIT, None)
        return found

    def checksums(self, org: uuid.UUID) -> dict[str, str]:
        return checksums(self.url, org)

    def schema_head(self) -> int:
        return schema_head(self.url)

    def delete(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return delete(self.url, org, keep_audit=keep_audit)

    def export(self, org: uuid.UUID, folder: Path) -> TenantPart:
        counts, head = export(self.url, org, folder)
        return TenantPart({f"{table}.csv": n for table, n in counts.items()},  # parents first
                          {"format": "csv", "header": True, "tables": list(counts),
                           "snapshot": "repeatable read, read only"}, head)

    def scratch_copies(self, org: uuid.UUID) -> dict[str, int]:
        """Not searched yet: restores' scratch databases are dropped by ``recover
        --cleanup``, tenant imports stage PostgreSQL in their own transaction."""
        return {}

    def erase_scratch(self, org: uuid.UUID) -> dict[str, int]:
        return {}

    def drop_staging(self, names: list[str] | None) -> list[str]:
        return []  # an import's rows wait in its transaction, which dies with it

    def stage_import(self, org: uuid.UUID, folder: Path, expected: dict[str, int], *,
                     info: dict[str, Any], saved: Path | None) -> PostgresImport:
        return PostgresImport(self.url, org, folder, expected,
                              list(info.get("tables", expected)), replace=saved is not None)


class PostgresImport:
    """The archive's rows loaded into ONE open transaction; switching commits it, so it
    is switched last: the other stores are in before PostgreSQL shows the org."""

    store = "postgresql"
    last = True

    def __init__(self, url: str, org: uuid.UUID, folder: Path, expected: dict[str, int],
                 order: list[str], *, replace: bool) -> None:
        self._stack = ExitStack()
        self.loaded = self._stack.enter_context(
            loading(url, org, folder, order, replace=replace))
        try:
            compare("postgresql", self.loaded, expected)
        except BaseException:
            self.discard()
            raise

    def switch(self) -> None:
        self._stack.close()  # leaving loading() commits

    def undo(self) -> None:
        """Nothing to undo: the commit is the last switch of an import."""

    def commit(self) -> None:
        """Committed by :meth:`switch`."""

    def discard(self) -> None:
        self._stack.__exit__(ValidationError, ValidationError("import discarded"), None)

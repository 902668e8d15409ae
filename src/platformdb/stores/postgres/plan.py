"""``migrate plan`` on PostgreSQL: what each pending statement will do to the live database.

For every statement of every pending migration: the lock it takes on each
relation it touches, whether it rewrites the table, scans it under that lock
or builds an index, the live size of what it touches (rows and bytes from
the catalogue, partitions summed), and a verdict (:mod:`platformdb.migrate.planning`)
with why and the safe alternative. The facts come from the parse tree
(:mod:`.analysis`) and the catalogue (:mod:`.catalog`). Nothing is executed.
"""

from __future__ import annotations

import math
from typing import Any

import pglast
import psycopg

from platformdb.migrate.base import Migration
from platformdb.migrate.options import MigrateOptions
from platformdb.migrate.planning import (
    BACKFILL,
    MigrationPlan,
    StatementPlan,
    Target,
    size_text,
)
from platformdb.stores.postgres.analysis import (
    ACCESS_EXCLUSIVE,
    BLOCKS,
    ROW_EXCLUSIVE,
    SHARE,
    SHARE_UPDATE_EXCLUSIVE,
    Analysis,
    Effect,
    analyse,
    binary_compatible,
    parse,
    relations,
)
from platformdb.stores.postgres.backfill import DEFAULT_BATCH, backfill_settings
from platformdb.stores.postgres.catalog import (
    RelationInfo,
    checks_on_column,
    column_type,
    indexes_on_column,
    not_null_proven,
    relation,
)

ONLINE_INDEX = "`-- platformdb: online-index` (ON ONLY the parent, each partition CONCURRENTLY, " \
    "then attached)"


def mode_of(migration: Migration) -> str:
    for mode in ("online-index", "backfill", "no-transaction"):
        if mode in migration.directives:
            return mode
    return "transaction"


def _key(name: str | None) -> str:
    """A relation name as written, for matching (quotes and ``public.`` dropped)."""
    bare = (name or "").replace('"', "")
    return bare.removeprefix("public.")


# ------------------------------------------------------------------ PostgreSQL


class PostgresPlanner:
    """Plans a list of pending migrations against one live database."""

    def __init__(self, conn: psycopg.Connection[Any], options: MigrateOptions) -> None:
        self.conn = conn
        self.options = options
        self.created: set[str] = set()
        self.dropped: set[tuple[str, str]] = set()
        """(table, constraint) dropped by an earlier statement of the plan."""
        self._sizes: dict[str, RelationInfo] = {}

    def info(self, name: str) -> RelationInfo:
        if name not in self._sizes:
            self._sizes[name] = relation(self.conn, name)
        return self._sizes[name]

    def plan(self, migrations: list[Migration]) -> list[MigrationPlan]:
        plans = []
        for migration in migrations:
            mode = mode_of(migration)
            found = MigrationPlan("postgresql", migration.version, migration.label, mode)
            for statement in parse(migration.sql, migration.path):
                node = pglast.parse_sql(statement.sql)[0].stmt
                if mode == "online-index":
                    found.statements.append(self.online_index(statement.line, statement.sql,
                                                              node))
                elif mode == "backfill":
                    found.statements.append(self.backfill(statement.line, statement.sql, node,
                                                          migration.directives["backfill"]))
                else:
                    found.statements.append(self.statement(statement.line, statement.sql,
                                                           analyse(node), mode))
            plans.append(found)
        return plans

    # ----------------------------------------------------------- one statement

    def statement(self, line: int, sql: str, analysis: Analysis, mode: str) -> StatementPlan:
        plan = StatementPlan(line, sql.strip(), analysis.statement, analysis.lock)
        if analysis.opaque:
            plan.flag("caution", f"cannot tell what it locks: {analysis.opaque}",
                      "keep DO blocks and function calls out of migrations on big tables, or "
                      "check what they do by hand")
        if analysis.concurrent and mode == "transaction":
            plan.flag("danger", "runs as several transactions: PostgreSQL refuses it inside "
                      "the migration's transaction", "put it in a `-- platformdb: no-transaction`"
                      " migration of its own")
        for effect in analysis.effects:
            target = self.target(effect)
            plan.targets.append(target)
            self.judge(plan, effect, target)
            if effect.creates and effect.relation:
                self.created.add(_key(effect.relation))
            if effect.kind == "drop-constraint" and effect.column:
                self.dropped.add((_key(effect.relation), effect.column))
        return plan

    def target(self, effect: Effect) -> Target:
        new = effect.creates or _key(effect.relation) in self.created
        info = self.info(effect.relation) if effect.relation and not new else None
        return Target(
            effect.relation, effect.lock, effect.action, BLOCKS.get(effect.lock, ""),
            effect.rewrite, effect.scan, effect.build, effect.destructive,
            exists=bool(info and info.exists), new=new, kind=info.kind if info else "",
            rows=info.rows if info else 0 if new else None, bytes=info.bytes if info else 0,
            partitions=info.partitions if info else 0, note=effect.note)

    def judge(self, plan: StatementPlan, effect: Effect, target: Target) -> None:
        if target.new or effect.relation is None:
            return
        if not target.exists:
            if effect.kind not in ("drop-table", "drop-view", "drop-index", "create-partition"):
                plan.flag("caution", f"{effect.relation} does not exist (yet): it cannot be sized")
            return
        info = self.info(effect.relation)
        has_rows = target.rows is None or target.rows > 0
        size = size_text(target)
        table = effect.relation
        if effect.kind == "alter-type" and effect.column and effect.new_type:
            self.column_type_change(plan, effect, target, size, has_rows)
            return
        if effect.kind == "set-not-null" and effect.column and not_null_proven(
                self.conn, table, effect.column):
            target.scan = False
            target.note = "a valid CHECK (... IS NOT NULL) proves it: no scan"
        if effect.kind == "create-partition" and info.has_default:
            target.scan = True
            rows = "?" if info.default_rows is None else f"{info.default_rows:,}"
            target.note = f"scans the DEFAULT partition ({rows} rows) under ACCESS EXCLUSIVE"
            if info.default_rows is None or info.default_rows > 0:
                plan.flag("caution", f"{table}'s DEFAULT partition holds {rows} rows and is "
                          "scanned while the parent is locked",
                          "create partitions ahead of time (`platformdb partitions ensure`) "
                          "so the DEFAULT partition stays empty")
            return
        if effect.kind == "create-partition":
            return
        if target.rewrite and has_rows:
            plan.flag("danger", f"rewrites {table} ({size}) and its indexes under "
                      f"{effect.lock}: {BLOCKS[effect.lock]} wait until it finishes",
                      _rewrite_instead(effect))
        elif effect.maybe_rewrite and has_rows:
            plan.flag("caution", f"{effect.maybe_rewrite} ({size})",
                      "use a constant default, or add the column without one and fill it "
                      f"with {BACKFILL}")
        if target.build and effect.kind in ("create-index", "add-unique", "reindex") and has_rows:
            if info.partitioned:
                plan.flag("danger", f"builds an index over {table} ({size}) under {effect.lock}:"
                          f" {BLOCKS[effect.lock]} on every partition wait until it is built; "
                          "PostgreSQL cannot build it CONCURRENTLY on a partitioned table",
                          ONLINE_INDEX)
            else:
                plan.flag("danger", f"builds an index over {table} ({size}) under {effect.lock}:"
                          f" {BLOCKS[effect.lock]} wait until it is built",
                          "CREATE INDEX CONCURRENTLY in a `-- platformdb: no-transaction` "
                          "migration" + (", then ADD CONSTRAINT ... USING INDEX"
                                         if effect.kind == "add-unique" else ""))
        if effect.kind == "create-index-concurrently" and info.partitioned:
            plan.flag("danger", f"{table} is partitioned: PostgreSQL refuses CREATE INDEX "
                      "CONCURRENTLY on it", ONLINE_INDEX)
        if target.scan and has_rows and effect.lock in (ACCESS_EXCLUSIVE, SHARE,
                                                       "SHARE ROW EXCLUSIVE"):
            plan.flag("danger", f"scans every row of {table} ({size}) under {effect.lock}: "
                      f"{BLOCKS[effect.lock]} wait until the scan ends", _scan_instead(effect))
        elif target.scan and has_rows and effect.lock == SHARE_UPDATE_EXCLUSIVE:
            target.note = target.note or "reads and writes go on during the scan"
        if effect.kind in ("update", "delete", "merge") and has_rows:
            plan.flag("caution", f"{effect.kind.upper()} over {table} ({size}) in one "
                      "transaction: every row it changes stays locked until the end", BACKFILL)
        if target.destructive and has_rows:
            plan.flag("caution", f"drops data: {effect.action} ({size})",
                      "stop every reader and writer first (expand, migrate readers, contract) "
                      "and make sure a backup holds it")

    def column_type_change(self, plan: StatementPlan, effect: Effect, target: Target, size: str,
                           has_rows: bool) -> None:
        table, column = str(effect.relation), str(effect.column)
        old = column_type(self.conn, table, column)
        if old is None:
            plan.flag("caution", f"{table}.{column} does not exist (yet): cannot tell whether "
                      "the type change rewrites the table")
            return
        compatible = False if effect.using else binary_compatible(old, str(effect.new_type))
        if compatible is None:
            target.rewrite = True
            target.note = (f"{old} -> {effect.new_type} rewrites unless the session TimeZone "
                           "is UTC")
        elif not compatible:
            target.rewrite = True
            indexes = indexes_on_column(self.conn, table, column)
            target.note = f"{old} -> {effect.new_type} is not binary compatible" + (
                f"; rebuilds {', '.join(indexes)}" if indexes else "")
        else:
            checks = [c for c in checks_on_column(self.conn, table, column)
                      if (_key(table), c) not in self.dropped]
            target.note = f"{old} -> {effect.new_type}: binary compatible, no rewrite"
            if checks:
                target.scan = True
                target.note += f"; re-validates {', '.join(checks)} (a scan)"
        if target.rewrite and has_rows:
            plan.flag("danger", f"rewrites {table} ({size}) and its indexes under "
                      f"{ACCESS_EXCLUSIVE} ({target.note}): reads and writes wait until it ends",
                      _rewrite_instead(effect))
        elif target.scan and has_rows:
            plan.flag("danger", f"re-validates CHECK constraints on {column}, scanning every row"
                      f" of {table} ({size}) under {ACCESS_EXCLUSIVE}",
                      "drop those CHECK constraints first and add them back NOT VALID in the "
                      "same migration; VALIDATE CONSTRAINT in the next one (SHARE UPDATE "
                      "EXCLUSIVE: reads and writes go on)")

    # ----------------------------------------------------------- directives

    def online_index(self, line: int, sql: str, node: Any) -> StatementPlan:
        names = relations(node)
        table = names[0] if names else None
        plan = StatementPlan(line, sql.strip(), "CREATE INDEX (online)", SHARE_UPDATE_EXCLUSIVE)
        effect = Effect(table, SHARE_UPDATE_EXCLUSIVE, "build online", build=True)
        target = self.target(effect)
        if table and not target.new:
            info = self.info(table)
            leaves = info.partitions or 1
            target.note = (f"ON ONLY the parent (SHARE, brief), {leaves} partition(s) built "
                           "CONCURRENTLY, each attached (brief)" if info.partitioned else
                           "CREATE INDEX CONCURRENTLY")
        target.blocks = BLOCKS[SHARE_UPDATE_EXCLUSIVE]
        plan.targets.append(target)
        return plan

    def backfill(self, line: int, sql: str, node: Any, settings: str) -> StatementPlan:
        batch = int(backfill_settings(settings).get("batch_size", DEFAULT_BATCH))
        names = relations(node)
        table = names[0] if names else None
        plan = StatementPlan(line, sql.strip(), "UPDATE (batched backfill)", ROW_EXCLUSIVE)
        target = self.target(Effect(table, ROW_EXCLUSIVE, f"batches of {batch} rows by primary"
                                    " key, each its own transaction", scan=True))
        if target.rows:
            target.note = f"about {math.ceil(target.rows / batch):,} batches"
        plan.targets.append(target)
        return plan


def _rewrite_instead(effect: Effect) -> str:
    if effect.kind == "alter-type":
        return (f"add a new column of the new type, fill it with {BACKFILL}, move readers and "
                "writers to it, then drop the old one (expand / contract)")
    if effect.kind == "add-column":
        return f"add the column without a volatile default, then fill it with {BACKFILL}"
    return "pg_repack, or copy into a new table in batches and swap"


def _scan_instead(effect: Effect) -> str:
    if effect.kind in ("add-check", "add-fk"):
        return ("ADD CONSTRAINT ... NOT VALID here; VALIDATE CONSTRAINT in the next migration "
                "(SHARE UPDATE EXCLUSIVE: reads and writes go on)")
    if effect.kind == "set-not-null":
        return ("ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in the next "
                "migration, then SET NOT NULL (no scan)")
    if effect.kind == "add-column":
        return f"add the column nullable, fill it with {BACKFILL}, then make it NOT NULL safely"
    if effect.kind == "attach-partition":
        return ("add a CHECK matching the partition bound to the table first (NOT VALID, then "
                "VALIDATE): ATTACH then skips its scan")
    return ""

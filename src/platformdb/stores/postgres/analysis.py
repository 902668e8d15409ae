"""What a PostgreSQL statement does to a live table, read from its parse tree (pglast).

For each statement, :func:`analyse` says which relations it touches, the
lock it takes on each (``ALTER TABLE`` subcommands differ: ``VALIDATE
CONSTRAINT`` takes SHARE UPDATE EXCLUSIVE, ``ADD FOREIGN KEY`` SHARE ROW
EXCLUSIVE on both tables, most others ACCESS EXCLUSIVE), and whether it
rewrites the table, scans every row under that lock, or builds an index.
The lock levels are PostgreSQL's (``AlterTableGetLockLevel`` and the
documentation's lock table, 15 to 18) and are checked against ``pg_locks``
on real servers by the tests.

Some answers need the live catalogue (is ``numeric(15,2)`` to
``numeric(38,2)`` binary compatible? which CHECK constraints use the
column?); :mod:`platformdb.stores.postgres.plan` asks it. This module never connects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pglast
from pglast import ast
from pglast.enums import AlterTableType as AT
from pglast.enums import ConstrType, ObjectType

from platformdb.errors import MigrationError


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



ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
LOCKS = ("", ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE,
         SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)
"""Weakest to strongest; ``""`` is no table lock at all."""

BLOCKS = {
    "": "nothing",
    ACCESS_SHARE: "only ACCESS EXCLUSIVE (DDL)",
    ROW_SHARE: "EXCLUSIVE and ACCESS EXCLUSIVE",
    ROW_EXCLUSIVE: "SHARE and stronger (CREATE INDEX, DDL)",
    SHARE_UPDATE_EXCLUSIVE: "other DDL and VACUUM, not reads or writes",
    SHARE: "writes (INSERT, UPDATE, DELETE)",
    SHARE_ROW_EXCLUSIVE: "writes (INSERT, UPDATE, DELETE)",
    EXCLUSIVE: "writes; reads go on",
    ACCESS_EXCLUSIVE: "reads and writes",
}
"""What waits while the lock is held (or queued)."""

_LOCK_MODES = {1: ACCESS_SHARE, 2: ROW_SHARE, 3: ROW_EXCLUSIVE, 4: SHARE_UPDATE_EXCLUSIVE,
               5: SHARE, 6: SHARE_ROW_EXCLUSIVE, 7: EXCLUSIVE, 8: ACCESS_EXCLUSIVE}

# Storage parameters that ALTER TABLE ... SET (...) changes under SHARE UPDATE EXCLUSIVE.
_LIGHT_RELOPTIONS = re.compile(
    r"^(toast\.)?(fillfactor|autovacuum_.*|vacuum_.*|log_autovacuum_min_duration|"
    r"parallel_workers|toast_tuple_target|n_distinct.*)$")
# Defaults known to be volatile (a new column filled with them rewrites the table).
VOLATILE_FUNCTIONS = {"random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v4",
                      "uuidv4", "uuidv7", "clock_timestamp", "timeofday", "nextval",
                      "txid_current", "statement_timestamp", "pg_backend_pid"}
STABLE_FUNCTIONS = {"now", "current_timestamp", "transaction_timestamp", "current_date",
                    "current_user", "session_user", "current_setting", "localtimestamp"}
SERIAL_TYPES = {"serial", "serial4", "serial8", "bigserial", "smallserial", "serial2"}


@dataclass(frozen=True)
class Effect:
    """What one statement (or ALTER TABLE subcommand) does to one relation."""

    relation: str | None
    """As written (``public.campaigns``, ``campaigns``); None when no relation."""
    lock: str
    action: str
    rewrite: bool = False
    """Rewrites the whole table and its indexes."""
    scan: bool = False
    """Reads every row (validation) while holding ``lock``."""
    build: bool = False
    """Builds an index: reads every row."""
    destructive: bool = False
    """Drops data."""
    column: str | None = None
    """The column (or, for DROP CONSTRAINT, the constraint) the subcommand names."""
    new_type: str | None = None
    """ALTER COLUMN TYPE: the new type, as format_type would print it."""
    using: bool = False
    """ALTER COLUMN TYPE ... USING: always rewrites."""
    maybe_rewrite: str = ""
    """Why it may rewrite (a default the parser cannot judge); empty when it knows."""
    creates: bool = False
    """The relation is new (created by this statement): empty, nobody else can see it."""
    recurse: bool = True
    """Applies to partitions too (sizes are summed over them)."""
    note: str = ""
    kind: str = ""
    """A stable tag for the rules of :mod:`.plan`: add-column, alter-type, set-not-null..."""


@dataclass
class Analysis:
    """Every effect of one statement."""

    statement: str
    effects: list[Effect] = field(default_factory=list)
    opaque: str = ""
    """Why the parser cannot tell what it locks (a DO block, a function call)."""
    concurrent: bool = False
    """Runs as several transactions (CREATE INDEX CONCURRENTLY...): no transaction allowed."""

    @property
    def lock(self) -> str:
        return strongest(e.lock for e in self.effects)


def strongest(locks: Any) -> str:
    found = [lock for lock in locks if lock]
    return max(found, key=LOCKS.index) if found else ""


def name_of(node: Any) -> str | None:
    if node is None:
        return None
    return f"{node.schemaname}.{node.relname}" if node.schemaname else str(node.relname)


def _qualified(parts: Any) -> str:
    return ".".join(str(p.sval) for p in parts)


def _first_word(node: ast.Node) -> str:
    return type(node).__name__.removesuffix("Stmt")


def analyse(node: Any) -> Analysis:
    """The effects of one parsed statement (``RawStmt.stmt``)."""
    handler = _HANDLERS.get(type(node))
    analysis = Analysis(_first_word(node))
    if handler is None:
        return analysis  # catalogue only (functions, roles, schemas, types...): no table lock
    handler(node, analysis)
    return analysis


# ------------------------------------------------------------------ CREATE


def _create_table(node: Any, out: Analysis) -> None:
    out.statement = "CREATE TABLE"
    table = name_of(node.relation)
    out.effects.append(Effect(table, ACCESS_EXCLUSIVE, "create table", creates=True,
                              kind="create-table"))
    if node.partbound is not None and node.inhRelations:
        parent = name_of(node.inhRelations[0])
        out.effects.append(Effect(
            parent, ACCESS_EXCLUSIVE, f"add partition {table}", scan=bool(node.partbound) and
            not node.partbound.is_default, recurse=False, kind="create-partition",
            note="a DEFAULT partition is scanned for rows that belong in the new one"))
    for element in node.tableElts or ():
        for constraint in _constraints_of(element):
            if constraint.contype == ConstrType.CONSTR_FOREIGN and constraint.pktable:
                out.effects.append(Effect(name_of(constraint.pktable), SHARE_ROW_EXCLUSIVE,
                                          f"foreign key from new table {table}", recurse=False,
                                          kind="fk-target"))


def _constraints_of(element: Any) -> list[ast.Constraint]:
    if isinstance(element, ast.Constraint):
        return [element]
    if isinstance(element, ast.ColumnDef):
        return list(element.constraints or ())
    return []


def _create_table_as(node: Any, out: Analysis) -> None:
    out.statement = "CREATE TABLE AS"
    out.effects.append(Effect(name_of(node.into.rel), ACCESS_EXCLUSIVE, "create table from a query",
                              creates=True, kind="create-table"))
    for source in relations(node.query):
        out.effects.append(Effect(source, ACCESS_SHARE, "read by the query", scan=True,
                                  kind="read"))


def _create_index(node: Any, out: Analysis) -> None:
    out.statement = "CREATE INDEX"
    table = name_of(node.relation)
    only = node.relation is not None and not node.relation.inh
    if node.concurrent:
        out.concurrent = True
        words = f"build index {node.idxname} concurrently" if node.idxname else (
            "build an index concurrently")
        out.effects.append(Effect(table, SHARE_UPDATE_EXCLUSIVE, words, build=True,
                                  kind="create-index-concurrently"))
    elif only:
        out.effects.append(Effect(table, SHARE, f"create index {node.idxname or ''} ON ONLY the "
                                  "parent (invalid until each partition's index is attached)",
                                  recurse=False, kind="create-index-only"))
    else:
        out.effects.append(Effect(table, SHARE, f"build index {node.idxname or ''}", build=True,
                                  kind="create-index"))


def _create_view(node: Any, out: Analysis) -> None:
    out.statement = "CREATE VIEW"
    view = name_of(node.view)
    out.effects.append(Effect(view, ACCESS_EXCLUSIVE,
                              "replace view" if node.replace else "create view",
                              creates=not node.replace, recurse=False, kind="view"))


def _create_policy(node: Any, out: Analysis) -> None:
    out.statement = "CREATE POLICY" if isinstance(node, ast.CreatePolicyStmt) else "ALTER POLICY"
    out.effects.append(Effect(name_of(node.table), ACCESS_EXCLUSIVE,
                              f"{out.statement.lower()} {node.policy_name}", recurse=False,
                              kind="policy"))


def _create_trigger(node: Any, out: Analysis) -> None:
    out.statement = "CREATE TRIGGER"
    out.effects.append(Effect(name_of(node.relation), SHARE_ROW_EXCLUSIVE,
                              f"create trigger {node.trigname}", kind="trigger"))


def _create_rule(node: Any, out: Analysis) -> None:
    out.statement = "CREATE RULE"
    out.effects.append(Effect(name_of(node.relation), ACCESS_EXCLUSIVE,
                              f"create rule {node.rulename}", recurse=False, kind="rule"))


def _create_statistics(node: Any, out: Analysis) -> None:
    out.statement = "CREATE STATISTICS"
    for source in node.relations or ():
        if isinstance(source, ast.RangeVar):
            out.effects.append(Effect(name_of(source), SHARE_UPDATE_EXCLUSIVE,
                                      "create extended statistics", recurse=False, kind="stats"))


# ------------------------------------------------------------------ ALTER TABLE


def _alter_table(node: Any, out: Analysis) -> None:
    target = name_of(node.relation)
    if node.objtype == ObjectType.OBJECT_INDEX:
        out.statement = "ALTER INDEX"
        for cmd in node.cmds or ():
            if cmd.subtype == AT.AT_AttachPartition:
                child = name_of(cmd.def_.name)
                out.effects.append(Effect(target, SHARE_UPDATE_EXCLUSIVE,
                                          f"attach index {child}", recurse=False,
                                          kind="attach-index"))
                out.effects.append(Effect(child, ACCESS_EXCLUSIVE, f"attached to {target}",
                                          recurse=False, kind="attach-index"))
            else:
                out.effects.append(Effect(target, ACCESS_EXCLUSIVE, "alter index", recurse=False,
                                          kind="alter-index"))
        return
    if node.objtype in (ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW):
        out.statement = "ALTER VIEW"
        out.effects.append(Effect(target, ACCESS_EXCLUSIVE, "alter view", recurse=False,
                                  kind="view"))
        return
    out.statement = "ALTER TABLE"
    for cmd in node.cmds or ():
        out.effects.extend(_subcommand(target, cmd))


def _subcommand(table: str | None, cmd: Any) -> list[Effect]:
    kind = cmd.subtype
    column = cmd.name
    if kind == AT.AT_AddColumn:
        return _add_column(table, cmd.def_)
    if kind == AT.AT_AlterColumnType:
        definition = cmd.def_
        new_type = type_text(definition.typeName) if definition.typeName else None
        return [Effect(table, ACCESS_EXCLUSIVE, f"ALTER COLUMN {column} TYPE {new_type}",
                       column=column, new_type=new_type, using=definition.raw_default is not None,
                       kind="alter-type")]
    if kind == AT.AT_SetNotNull:
        return [Effect(table, ACCESS_EXCLUSIVE, f"SET NOT NULL on {column}", scan=True,
                       column=column, kind="set-not-null",
                       note="no scan when a valid CHECK (col IS NOT NULL) already proves it")]
    if kind == AT.AT_AddConstraint:
        return _add_constraint(table, cmd.def_)
    if kind == AT.AT_ValidateConstraint:
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE, f"VALIDATE CONSTRAINT {column}", scan=True,
                       kind="validate")]
    if kind == AT.AT_DropColumn:
        return [Effect(table, ACCESS_EXCLUSIVE, f"DROP COLUMN {column}", destructive=True,
                       column=column, kind="drop-column")]
    if kind == AT.AT_AttachPartition:
        child = name_of(cmd.def_.name)
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE, f"ATTACH PARTITION {child}", recurse=False,
                       kind="attach-partition",
                       note="a DEFAULT partition is scanned for rows of the new range"),
                Effect(child, ACCESS_EXCLUSIVE, f"attached to {table}", scan=True,
                       kind="attach-partition",
                       note="no scan when a valid CHECK already implies the bound")]
    if kind == AT.AT_DetachPartition:
        child = name_of(cmd.def_.name)
        concurrent = bool(cmd.def_.concurrent)
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE if concurrent else ACCESS_EXCLUSIVE,
                       f"DETACH PARTITION {child}{' CONCURRENTLY' if concurrent else ''}",
                       recurse=False, kind="detach-partition"),
                Effect(child, ACCESS_EXCLUSIVE, f"detached from {table}", recurse=False,
                       kind="detach-partition")]
    if kind == AT.AT_DetachPartitionFinalize:
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE, "DETACH PARTITION ... FINALIZE",
                       recurse=False, kind="detach-partition")]
    if kind in (AT.AT_SetRelOptions, AT.AT_ResetRelOptions, AT.AT_ReplaceRelOptions):
        names = [str(d.defname) for d in cmd.def_ or ()]
        light = all(_LIGHT_RELOPTIONS.match(n) for n in names)
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE if light else ACCESS_EXCLUSIVE,
                       f"SET ({', '.join(names)})", recurse=False, kind="reloptions")]
    if kind in (AT.AT_SetStatistics, AT.AT_SetOptions, AT.AT_ResetOptions, AT.AT_ClusterOn,
                AT.AT_DropCluster):
        return [Effect(table, SHARE_UPDATE_EXCLUSIVE, _words(kind), recurse=False,
                       kind="light")]
    if kind in (AT.AT_EnableTrig, AT.AT_EnableAlwaysTrig, AT.AT_EnableReplicaTrig,
                AT.AT_DisableTrig, AT.AT_EnableTrigAll, AT.AT_DisableTrigAll,
                AT.AT_EnableTrigUser, AT.AT_DisableTrigUser):
        return [Effect(table, SHARE_ROW_EXCLUSIVE, _words(kind), kind="trigger")]
    if kind in (AT.AT_SetLogged, AT.AT_SetUnLogged, AT.AT_SetAccessMethod,
                AT.AT_SetTableSpace):
        return [Effect(table, ACCESS_EXCLUSIVE, _words(kind), rewrite=True, kind="rewrite")]
    if kind in (AT.AT_AddInherit, AT.AT_DropInherit):
        parent = name_of(cmd.def_) if isinstance(cmd.def_, ast.RangeVar) else None
        return [Effect(table, ACCESS_EXCLUSIVE, _words(kind), recurse=False, kind="inherit"),
                Effect(parent, ACCESS_EXCLUSIVE, f"{_words(kind)} of {table}", recurse=False,
                       kind="inherit")]
    if kind == AT.AT_DropConstraint:
        return [Effect(table, ACCESS_EXCLUSIVE, f"DROP CONSTRAINT {column}", column=column,
                       kind="drop-constraint")]
    if kind in (AT.AT_EnableRowSecurity, AT.AT_DisableRowSecurity, AT.AT_ForceRowSecurity,
                AT.AT_NoForceRowSecurity):
        return [Effect(table, ACCESS_EXCLUSIVE, _words(kind), recurse=False, kind="rls")]
    return [Effect(table, ACCESS_EXCLUSIVE, _words(kind), column=column, kind="metadata")]


def _words(kind: Any) -> str:
    """``AT_SetNotNull`` -> ``set not null`` (for subcommands without their own words)."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", kind.name.removeprefix("AT_")).lower()


def _add_column(table: str | None, definition: Any) -> list[Effect]:
    name = definition.colname
    type_name = definition.typeName
    type_words = type_text(type_name) if type_name else "?"
    effects: list[Effect] = []
    rewrite = False
    maybe = ""
    scan = False
    not_null = bool(definition.is_not_null)
    has_default = False
    short_type = str(type_name.names[-1].sval) if type_name and type_name.names else ""
    if short_type in SERIAL_TYPES:
        rewrite, has_default = True, True
    for constraint in definition.constraints or ():
        contype = constraint.contype
        if contype == ConstrType.CONSTR_DEFAULT:
            has_default = True
            volatility = default_volatility(constraint.raw_expr)
            rewrite = rewrite or volatility == "volatile"
            if volatility == "unknown":
                maybe = "the default calls a function; it rewrites the table if that is volatile"
        elif contype in (ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED):
            rewrite = True
        elif contype == ConstrType.CONSTR_NOTNULL:
            not_null = True
        elif contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_PRIMARY,
                         ConstrType.CONSTR_UNIQUE):
            scan = True
        elif contype == ConstrType.CONSTR_FOREIGN and constraint.pktable is not None:
            effects.append(Effect(name_of(constraint.pktable), SHARE_ROW_EXCLUSIVE,
                                  f"foreign key from {table}.{name}", recurse=False,
                                  kind="fk-target"))
    note = ""
    if not_null and not has_default:
        scan = True
        note = "NOT NULL without a default fails on a table that has rows"
    effects.insert(0, Effect(table, ACCESS_EXCLUSIVE, f"ADD COLUMN {name} {type_words}",
                             rewrite=rewrite, scan=scan and not rewrite, column=name,
                             maybe_rewrite=maybe if not rewrite else "", note=note,
                             kind="add-column"))
    return effects


def _add_constraint(table: str | None, constraint: Any) -> list[Effect]:
    name = constraint.conname or "(unnamed)"
    not_valid = bool(constraint.skip_validation)
    contype = constraint.contype
    if contype == ConstrType.CONSTR_FOREIGN:
        referenced = name_of(constraint.pktable)
        words = f"ADD FOREIGN KEY {name}{' NOT VALID' if not_valid else ''}"
        return [Effect(table, SHARE_ROW_EXCLUSIVE, words, scan=not not_valid, kind="add-fk"),
                Effect(referenced, SHARE_ROW_EXCLUSIVE, f"referenced by {table}.{name}",
                       recurse=False, kind="fk-target")]
    if contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE,
                   ConstrType.CONSTR_EXCLUSION):
        words = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE",
                 ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}[contype]
        if constraint.indexname:
            return [Effect(table, ACCESS_EXCLUSIVE,
                           f"ADD {words} {name} USING INDEX {constraint.indexname}",
                           kind="add-constraint-using-index",
                           scan=contype == ConstrType.CONSTR_PRIMARY,
                           note="PRIMARY KEY checks NOT NULL on its columns")]
        return [Effect(table, ACCESS_EXCLUSIVE, f"ADD {words} {name}", build=True,
                       kind="add-unique")]
    words = f"ADD CHECK {name}{' NOT VALID' if not_valid else ''}"
    return [Effect(table, ACCESS_EXCLUSIVE, words, scan=not not_valid, kind="add-check")]


# ------------------------------------------------------------------ DROP, RENAME, others


def _drop(node: Any, out: Analysis) -> None:
    kind = node.removeType
    out.statement = f"DROP {kind.name.removeprefix('OBJECT_').replace('_', ' ')}"
    for obj in node.objects or ():
        parts = obj if isinstance(obj, tuple) else (obj,)
        if not all(isinstance(p, ast.String) for p in parts):
            continue
        name = _qualified(parts)
        if kind in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_FOREIGN_TABLE):
            out.effects.append(Effect(name, ACCESS_EXCLUSIVE, f"drop table {name}",
                                      destructive=True, kind="drop-table"))
        elif kind in (ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW,
                      ObjectType.OBJECT_SEQUENCE):
            out.effects.append(Effect(name, ACCESS_EXCLUSIVE, f"drop {name}", recurse=False,
                                      kind="drop-view"))
        elif kind == ObjectType.OBJECT_INDEX:
            lock = SHARE_UPDATE_EXCLUSIVE if node.concurrent else ACCESS_EXCLUSIVE
            out.concurrent = out.concurrent or bool(node.concurrent)
            out.effects.append(Effect(name, lock, f"drop index {name}", recurse=False,
                                      kind="drop-index",
                                      note="" if node.concurrent else
                                      "locks the index's table too"))
        elif kind in (ObjectType.OBJECT_POLICY, ObjectType.OBJECT_RULE,
                      ObjectType.OBJECT_TRIGGER):
            table = ".".join(str(p.sval) for p in parts[:-1])
            what = kind.name.removeprefix("OBJECT_").lower()
            out.effects.append(Effect(table, ACCESS_EXCLUSIVE, f"drop {what} {parts[-1].sval}",
                                      recurse=kind == ObjectType.OBJECT_TRIGGER,
                                      kind=f"drop-{what}"))


def _rename(node: Any, out: Analysis) -> None:
    out.statement = "RENAME"
    if node.relation is None:
        return  # functions, schemas, roles: catalogue only
    target = name_of(node.relation)
    lock = SHARE_UPDATE_EXCLUSIVE if node.renameType == ObjectType.OBJECT_INDEX else (
        ACCESS_EXCLUSIVE)
    out.effects.append(Effect(target, lock, f"rename {node.subname or target} to {node.newname}",
                              recurse=False, kind="rename"))


def _alter_schema(node: Any, out: Analysis) -> None:
    out.statement = "ALTER ... SET SCHEMA"
    if node.relation is not None:
        out.effects.append(Effect(name_of(node.relation), ACCESS_EXCLUSIVE,
                                  f"move to schema {node.newschema}", recurse=False,
                                  kind="rename"))


def _comment(node: Any, out: Analysis) -> None:
    out.statement = "COMMENT"
    if node.objtype in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_VIEW,
                        ObjectType.OBJECT_MATVIEW, ObjectType.OBJECT_COLUMN):
        parts = node.object if isinstance(node.object, tuple) else ()
        if node.objtype == ObjectType.OBJECT_COLUMN:
            parts = parts[:-1]
        if parts and all(isinstance(p, ast.String) for p in parts):
            out.effects.append(Effect(_qualified(parts), SHARE_UPDATE_EXCLUSIVE, "comment",
                                      recurse=False, kind="comment"))


def _grant(node: Any, out: Analysis) -> None:
    out.statement = "GRANT" if node.is_grant else "REVOKE"
    if node.objtype != ObjectType.OBJECT_TABLE or node.targtype != 0:
        return
    for target in node.objects or ():
        if isinstance(target, ast.RangeVar):
            out.effects.append(Effect(name_of(target), ACCESS_SHARE, out.statement.lower(),
                                      recurse=False, kind="grant",
                                      note="PostgreSQL 15 takes no table lock at all"))


def _truncate(node: Any, out: Analysis) -> None:
    out.statement = "TRUNCATE"
    for target in node.relations or ():
        out.effects.append(Effect(name_of(target), ACCESS_EXCLUSIVE, "truncate",
                                  destructive=True, kind="truncate"))


def _lock(node: Any, out: Analysis) -> None:
    out.statement = "LOCK"
    mode = _LOCK_MODES.get(int(node.mode), ACCESS_EXCLUSIVE)
    for target in node.relations or ():
        out.effects.append(Effect(name_of(target), mode, f"LOCK IN {mode} MODE", kind="lock"))


def _dml(node: Any, out: Analysis) -> None:
    out.statement = type(node).__name__.removesuffix("Stmt").upper()
    target = name_of(node.relation)
    rows = {"INSERT": "inserts", "UPDATE": "updates", "DELETE": "deletes", "MERGE": "merges"}
    out.effects.append(Effect(target, ROW_EXCLUSIVE, f"{rows[out.statement]} rows",
                              scan=out.statement in ("UPDATE", "DELETE", "MERGE"),
                              destructive=out.statement == "DELETE", kind=out.statement.lower()))
    if _calls_functions(node):
        out.opaque = "it calls functions, which may lock more"


def _select(node: Any, out: Analysis) -> None:
    out.statement = "SELECT"
    for source in relations(node):
        out.effects.append(Effect(source, ACCESS_SHARE, "read", recurse=False, kind="read"))
    if _calls_functions(node):
        out.opaque = "it calls a function: what that locks is not in the statement"


def _do(node: Any, out: Analysis) -> None:
    out.statement = "DO"
    out.opaque = "a DO block: what it locks depends on its body"


def _call(node: Any, out: Analysis) -> None:
    out.statement = "CALL"
    out.opaque = "a procedure call: what it locks is not in the statement"


def _refresh(node: Any, out: Analysis) -> None:
    out.statement = "REFRESH MATERIALIZED VIEW"
    out.effects.append(Effect(name_of(node.relation),
                              EXCLUSIVE if node.concurrent else ACCESS_EXCLUSIVE,
                              "refresh", rewrite=True, recurse=False, kind="refresh"))


def _reindex(node: Any, out: Analysis) -> None:
    out.statement = "REINDEX"
    concurrent = any(str(p.defname) == "concurrently" for p in node.params or ())
    out.concurrent = concurrent
    out.effects.append(Effect(name_of(node.relation),
                              SHARE_UPDATE_EXCLUSIVE if concurrent else ACCESS_EXCLUSIVE,
                              "reindex", build=True, recurse=False, kind="reindex",
                              note="" if concurrent else "blocks writes, and reads that use it"))


def _cluster(node: Any, out: Analysis) -> None:
    out.statement = "CLUSTER"
    out.effects.append(Effect(name_of(node.relation), ACCESS_EXCLUSIVE, "cluster", rewrite=True,
                              kind="rewrite"))


def _vacuum(node: Any, out: Analysis) -> None:
    out.statement = "VACUUM" if node.is_vacuumcmd else "ANALYZE"
    full = any(str(o.defname) == "full" for o in node.options or ())
    out.concurrent = True  # VACUUM cannot run in a transaction block
    for target in node.rels or ():
        out.effects.append(Effect(name_of(target.relation),
                                  ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE,
                                  "vacuum full" if full else out.statement.lower(),
                                  rewrite=full, scan=not full, kind="vacuum"))


_HANDLERS: dict[type, Any] = {
    ast.CreateStmt: _create_table, ast.CreateTableAsStmt: _create_table_as,
    ast.IndexStmt: _create_index, ast.ViewStmt: _create_view,
    ast.CreatePolicyStmt: _create_policy, ast.AlterPolicyStmt: _create_policy,
    ast.CreateTrigStmt: _create_trigger, ast.RuleStmt: _create_rule,
    ast.CreateStatsStmt: _create_statistics, ast.AlterTableStmt: _alter_table,
    ast.DropStmt: _drop, ast.RenameStmt: _rename, ast.AlterObjectSchemaStmt: _alter_schema,
    ast.CommentStmt: _comment, ast.GrantStmt: _grant, ast.TruncateStmt: _truncate,
    ast.LockStmt: _lock, ast.InsertStmt: _dml, ast.UpdateStmt: _dml, ast.DeleteStmt: _dml,
    ast.MergeStmt: _dml, ast.SelectStmt: _select, ast.DoStmt: _do, ast.CallStmt: _call,
    ast.RefreshMatViewStmt: _refresh, ast.ReindexStmt: _reindex, ast.ClusterStmt: _cluster,
    ast.VacuumStmt: _vacuum,
}


# ------------------------------------------------------------------ helpers


def walk(node: Any) -> Iterator[Any]:
    """Every node under ``node`` (``node`` included), depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, tuple | list):
            stack.extend(reversed(current))
            continue
        if not isinstance(current, ast.Node):
            continue
        yield current
        for attribute in current:
            value = getattr(current, attribute, None)
            if isinstance(value, ast.Node | tuple | list):
                stack.append(value)


def relations(node: Any) -> list[str]:
    """Every table a statement names (``RangeVar``), in order, once each."""
    seen: dict[str, None] = {}
    for found in walk(node):
        if isinstance(found, ast.RangeVar):
            name = name_of(found)
            if name:
                seen.setdefault(name, None)
    return list(seen)


def _calls_functions(node: Any) -> bool:
    return any(isinstance(found, ast.FuncCall) and _function_name(found) not in
               STABLE_FUNCTIONS | {"count", "sum", "max", "min", "coalesce", "lower", "upper"}
               for found in walk(node))


def _function_name(call: Any) -> str:
    return str(call.funcname[-1].sval).lower()


def default_volatility(expression: Any) -> str:
    """``immutable``, ``stable``, ``volatile`` or ``unknown`` for a DEFAULT expression."""
    calls = [found for found in walk(expression) if isinstance(found, ast.FuncCall)]
    if any(isinstance(found, ast.SQLValueFunction) for found in walk(expression)):
        verdict = "stable"
    else:
        verdict = "immutable"
    for call in calls:
        name = _function_name(call)
        if name in VOLATILE_FUNCTIONS:
            return "volatile"
        if name in STABLE_FUNCTIONS:
            verdict = "stable"
        else:
            return "unknown"
    return verdict


_TYPE_NAMES = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real",
    "float8": "double precision", "bool": "boolean", "varchar": "character varying",
    "bpchar": "character", "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone", "timetz": "time with time zone",
    "time": "time without time zone", "varbit": "bit varying",
}


def type_text(type_name: Any) -> str:
    """A TypeName as ``format_type`` prints it: ``numeric(38,2)``, ``character varying(255)``."""
    base = str(type_name.names[-1].sval)
    words = _TYPE_NAMES.get(base, base)
    mods = [str(m.val.ival) for m in type_name.typmods or ()
            if isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer)]
    if mods and " with" in words:
        head, _, tail = words.partition(" with")
        text = f"{head}({','.join(mods)}) with{tail}"
    elif mods and " without" in words:
        head, _, tail = words.partition(" without")
        text = f"{head}({','.join(mods)}) without{tail}"
    else:
        text = f"{words}({','.join(mods)})" if mods else words
    if type_name.arrayBounds:
        text += "[]"
    return text


_TYPMOD = re.compile(r"^(?P<base>[a-z ]+?)(?:\((?P<mods>[\d,]+)\))?"
                     r"(?P<tail> with(?:out)? time zone)?(?P<array>\[\])?$")
_LENGTH_TYPES = {"character varying", "bit varying"}
_PRECISION_TYPES = {"timestamp", "time", "interval"}
_TEXT_LIKE = {"text", "character varying"}


def binary_compatible(old: str, new: str) -> bool | None:
    """Whether changing a column from type ``old`` to ``new`` (``format_type`` texts) keeps
    every stored value as it is: no rewrite (PostgreSQL's length-coercion support functions).

    ``None`` means it depends on the session (``timestamp`` <-> ``timestamptz`` rewrites
    nothing only when the TimeZone is UTC).
    """
    if old == new:
        return True
    a, b = _TYPMOD.match(old), _TYPMOD.match(new)
    if a is None or b is None or bool(a["array"]) != bool(b["array"]):
        return False
    base_a, base_b = a["base"].strip(), b["base"].strip()
    tail_a, tail_b = a["tail"] or "", b["tail"] or ""
    mods_a = [int(x) for x in a["mods"].split(",")] if a["mods"] else []
    mods_b = [int(x) for x in b["mods"].split(",")] if b["mods"] else []
    if base_a in _TEXT_LIKE and base_b in _TEXT_LIKE:
        return base_b == "text" or not mods_b or (bool(mods_a) and mods_b[0] >= mods_a[0])
    if {base_a, base_b} == {"timestamp"} and tail_a != tail_b:
        return None
    if base_a != base_b or tail_a != tail_b:
        return base_a == "cidr" and base_b == "inet"
    if base_a in _LENGTH_TYPES or base_a in _PRECISION_TYPES:
        return not mods_b or (bool(mods_a) and mods_b[0] >= mods_a[0])
    if base_a == "numeric":
        if not mods_b:
            return True
        if not mods_a:
            return False
        scale_a = mods_a[1] if len(mods_a) > 1 else 0
        scale_b = mods_b[1] if len(mods_b) > 1 else 0
        return scale_a == scale_b and mods_b[0] >= mods_a[0]
    return False

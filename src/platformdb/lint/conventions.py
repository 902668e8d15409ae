"""The platform's PostgreSQL conventions, checked statically from the migrations.

The schema is rebuilt from the pglast trees of ``postgresql/migrations/*.sql``
(up files, in order): ``CREATE TABLE``, ``ALTER TABLE`` (columns, NOT NULL,
constraints, row-level security), ``CREATE INDEX``, ``CREATE POLICY`` and the
matching ``DROP``s, so ``platformdb lint`` needs no server. Statements run
through dynamic SQL (``EXECUTE`` in a DO block) are invisible to it.

A tenant table is a table in ``public`` with an ``org_id`` column, plus
``organizations`` (whose own ``id`` is the tenant). Partitions (``PARTITION
OF``) inherit from their parent and are not checked. Rules:

- ``tenant-org-id``: ``org_id`` is ``uuid NOT NULL``;
- ``tenant-rls``: row-level security is ENABLEd and FORCEd;
- ``tenant-policy``: at least one policy;
- ``tenant-org-index``: an index (or primary/unique key) leads with ``org_id``;
- ``tenant-key``: primary and unique keys include ``org_id``;
- ``tenant-fk``: a reference to another tenant table includes ``org_id``, so
  no row can point into another tenant;
- ``fk-index`` (every table in ``public``): the columns of each foreign key
  lead a non-partial index, so deletes on the referenced table and joins do
  not scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast, enums

from platformdb.lint.context import Context
from platformdb.lint.findings import Finding
from platformdb.lint.sqlfiles import SqlFile, Statement, line_of

TENANT_COLUMN = "org_id"
TENANT_ROOT = "organizations"


@dataclass
class Column:
    type: str
    not_null: bool


@dataclass
class Key:
    columns: tuple[str, ...]
    name: str | None = None
    partial: bool = False
    constraint: str | None = None  # "primary" | "unique" | None for a plain index


@dataclass
class ForeignKey:
    columns: tuple[str, ...]
    target: str
    target_columns: tuple[str, ...]
    rel: str
    line: int
    name: str | None = None


@dataclass
class Table:
    name: str
    rel: str
    line: int
    columns: dict[str, Column] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    rls_enabled: bool = False
    rls_forced: bool = False
    policies: set[str] = field(default_factory=set)

    @property
    def is_tenant(self) -> bool:
        return self.name == TENANT_ROOT or TENANT_COLUMN in self.columns

    @property
    def tenant_column(self) -> str:
        return "id" if self.name == TENANT_ROOT else TENANT_COLUMN


class Schema:
    """The tables of ``public`` as the migrations leave them."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def apply(self, sql_file: SqlFile, statement: Statement) -> None:
        node = statement.node
        if isinstance(node, ast.CreateStmt):
            self._create(sql_file, statement, node)
        elif isinstance(node, ast.AlterTableStmt):
            self._alter(sql_file, statement, node)
        elif isinstance(node, ast.IndexStmt):
            self._index(node)
        elif isinstance(node, ast.CreatePolicyStmt):
            table = self._table(node.table)
            if table is not None:
                table.policies.add(str(node.policy_name))
        elif isinstance(node, ast.DropStmt):
            self._drop(node)

    def _table(self, relation: ast.RangeVar | None) -> Table | None:
        if relation is None or relation.schemaname not in (None, "public"):
            return None
        return self.tables.get(str(relation.relname))

    def _create(self, sql_file: SqlFile, statement: Statement, node: ast.CreateStmt) -> None:
        relation = node.relation
        if relation is None or node.partbound is not None \
                or relation.schemaname not in (None, "public"):
            return
        name = str(relation.relname)
        if name in self.tables and node.if_not_exists:
            return
        table = Table(name, sql_file.rel, statement.line)
        self.tables[name] = table
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                self._column(sql_file, statement, table, element)
            elif isinstance(element, ast.Constraint):
                self._constraint(sql_file, statement, table, element)

    def _column(self, sql_file: SqlFile, statement: Statement, table: Table,
                column: ast.ColumnDef) -> None:
        name = str(column.colname)
        names = column.typeName.names if column.typeName else None
        type_name = names[-1].sval if names else ""
        table.columns[name] = Column(str(type_name), bool(column.is_not_null))
        for constraint in column.constraints or ():
            kind = constraint.contype
            if kind == enums.ConstrType.CONSTR_NOTNULL:
                table.columns[name].not_null = True
            elif kind in (enums.ConstrType.CONSTR_PRIMARY, enums.ConstrType.CONSTR_UNIQUE,
                          enums.ConstrType.CONSTR_FOREIGN):
                self._constraint(sql_file, statement, table, constraint, (name,))

    def _constraint(self, sql_file: SqlFile, statement: Statement, table: Table,
                    constraint: ast.Constraint, columns: tuple[str, ...] = ()) -> None:
        kind = constraint.contype
        if kind in (enums.ConstrType.CONSTR_PRIMARY, enums.ConstrType.CONSTR_UNIQUE):
            keys = _names(constraint.keys) or columns
            primary = kind == enums.ConstrType.CONSTR_PRIMARY
            table.keys.append(Key(keys, constraint.conname or constraint.indexname,
                                  constraint="primary" if primary else "unique"))
            if primary:
                for key in keys:
                    if key in table.columns:
                        table.columns[key].not_null = True
        elif kind == enums.ConstrType.CONSTR_FOREIGN and constraint.pktable is not None:
            table.foreign_keys.append(ForeignKey(
                _names(constraint.fk_attrs) or columns, str(constraint.pktable.relname),
                _names(constraint.pk_attrs), sql_file.rel,
                line_of(sql_file.sql, constraint.location) if constraint.location is not None
                and constraint.location >= 0 else statement.line, constraint.conname))

    def _alter(self, sql_file: SqlFile, statement: Statement, node: ast.AlterTableStmt) -> None:
        table = self._table(node.relation)
        if table is None:
            return
        types = enums.AlterTableType
        for cmd in node.cmds or ():
            subtype = cmd.subtype
            if subtype == types.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
                self._column(sql_file, statement, table, cmd.def_)
            elif subtype == types.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
                self._constraint(sql_file, statement, table, cmd.def_)
            elif subtype == types.AT_SetNotNull and cmd.name in table.columns:
                table.columns[str(cmd.name)].not_null = True
            elif subtype == types.AT_DropNotNull and cmd.name in table.columns:
                table.columns[str(cmd.name)].not_null = False
            elif subtype == types.AT_DropColumn:
                table.columns.pop(str(cmd.name), None)
            elif subtype == types.AT_DropConstraint:
                table.keys = [k for k in table.keys if k.name != cmd.name]
                table.foreign_keys = [f for f in table.foreign_keys if f.name != cmd.name]
            elif subtype == types.AT_EnableRowSecurity:
                table.rls_enabled = True
            elif subtype == types.AT_DisableRowSecurity:
                table.rls_enabled = False
            elif subtype == types.AT_ForceRowSecurity:
                table.rls_forced = True
            elif subtype == types.AT_NoForceRowSecurity:
                table.rls_forced = False

    def _index(self, node: ast.IndexStmt) -> None:
        table = self._table(node.relation)
        if table is None:
            return
        columns: list[str] = []
        for element in node.indexParams or ():
            if not isinstance(element, ast.IndexElem) or element.name is None:
                break  # an expression: only the plain leading columns count
            columns.append(str(element.name))
        table.keys.append(Key(tuple(columns), node.idxname, node.whereClause is not None,
                              "unique" if node.unique else None))

    def _drop(self, node: ast.DropStmt) -> None:
        kind = node.removeType
        for names in node.objects or ():
            parts = [str(p.sval) for p in names] if isinstance(names, tuple) else []
            if not parts:
                continue
            if kind == enums.ObjectType.OBJECT_TABLE and parts[0] in ("public", parts[-1]):
                self.tables.pop(parts[-1], None)
            elif kind == enums.ObjectType.OBJECT_POLICY and len(parts) >= 2:
                table = self.tables.get(parts[-2])
                if table is not None:
                    table.policies.discard(parts[-1])
            elif kind == enums.ObjectType.OBJECT_INDEX:
                for table in self.tables.values():
                    table.keys = [k for k in table.keys
                                  if k.name != parts[-1] or k.constraint is not None]


def _names(nodes: tuple[ast.Node, ...] | None) -> tuple[str, ...]:
    return tuple(str(getattr(node, "sval", "")) for node in nodes or ())


def build_schema(ctx: Context) -> Schema:
    schema = Schema()
    for path in ctx.migration_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            schema.apply(sql_file, statement)
    return schema


def check(ctx: Context) -> list[Finding]:
    schema = build_schema(ctx)
    findings: list[Finding] = []
    for name in sorted(schema.tables):
        table = schema.tables[name]
        if table.is_tenant:
            findings.extend(_tenant_findings(table, schema))
        findings.extend(_fk_index_findings(table))
    return findings


def _tenant_findings(table: Table, schema: Schema) -> list[Finding]:
    found: list[Finding] = []

    def report(rule: str, message: str) -> None:
        found.append(Finding(table.rel, table.line, rule, f"{table.name}: {message}"))

    key = table.tenant_column
    column = table.columns.get(TENANT_COLUMN)
    if column is not None and (column.type != "uuid" or not column.not_null):
        report("tenant-org-id", f"org_id is {column.type}"
               f"{'' if column.not_null else ' and nullable'}; it must be uuid NOT NULL")
    if not table.rls_enabled or not table.rls_forced:
        missing = [w for w, ok in (("ENABLE", table.rls_enabled), ("FORCE", table.rls_forced))
                   if not ok]
        state = " and ".join(f"{w.lower()}d" for w in missing)
        fix = ", ".join(f"{w} ROW LEVEL SECURITY" for w in missing)
        report("tenant-rls", f"row-level security is not {state}; add ALTER TABLE "
               f"{table.name} {fix}")
    if not table.policies:
        report("tenant-policy", f"no row-level security policy; add CREATE POLICY "
               f"{table.name}_tenant_isolation")
    if not any(k.columns[:1] == (key,) for k in table.keys):
        report("tenant-org-index", f"no index leads with {key}; tenant queries filter by it")
    if table.name != TENANT_ROOT:
        for k in table.keys:
            if k.constraint is not None and key not in k.columns:
                report("tenant-key", f"{k.constraint} key ({', '.join(k.columns)}) does not "
                       f"include org_id; every tenant key must")
        for fk in table.foreign_keys:
            target = schema.tables.get(fk.target)
            if target is not None and target.is_tenant and target.name != TENANT_ROOT \
                    and TENANT_COLUMN not in fk.columns:
                found.append(Finding(fk.rel, fk.line, "tenant-fk",
                                     f"{table.name}: foreign key ({', '.join(fk.columns)}) to "
                                     f"{fk.target} leaves out org_id; reference (org_id, ...) "
                                     "so a row cannot point into another tenant"))
    return found


def _fk_index_findings(table: Table) -> list[Finding]:
    found: list[Finding] = []
    for fk in table.foreign_keys:
        width = len(fk.columns)
        covered = any(set(k.columns[:width]) == set(fk.columns) and not k.partial
                      for k in table.keys)
        if not covered:
            found.append(Finding(fk.rel, fk.line, "fk-index",
                                 f"{table.name}: foreign key ({', '.join(fk.columns)}) to "
                                 f"{fk.target} has no index leading with those columns"))
    return found

"""Security rules for PostgreSQL migrations, checked statically from pglast trees.

The migrations (up files, in order) are replayed into a small model of the
final schema: functions with their SECURITY DEFINER flag and ``SET`` clauses,
table and column privileges per role, views and what they expose, and the
partitions of the tenant tables with their row-level security. Rules:

- ``definer-search-path``: a ``SECURITY DEFINER`` function must pin
  ``search_path``, with ``pg_temp`` listed last (unlisted, it is searched
  *first* for tables and types) and neither ``public`` nor ``"$user"`` in it
  (schemas someone else may create objects in). Checked on the function's
  final definition across the migrations (``CREATE OR REPLACE``, ``ALTER
  FUNCTION``, ``DROP FUNCTION``), and on every ``CREATE FUNCTION`` of the other
  files under ``postgresql/`` (reference copies, tests).
- ``secret-grant``: no role but :data:`SECRET_READERS` (the owners of the
  definer functions that hand secrets out) may end up with ``SELECT`` on a
  secret column: the column itself, the whole table holding it, ``ALL
  TABLES IN SCHEMA``, a view running with its owner's rights that selects it
  (or ``*`` of its table), future tables (``ALTER DEFAULT PRIVILEGES``), or
  membership in a secret reader role. A secret column is one whose name
  says so (:data:`SECRET_COLUMN_RE`: ``password_hash``, ``token_hash``,
  ``*_encrypted``, ``*secret*``, ``*password*``, ``private_key``,
  ``api_key``...).
- ``partition-rls``: a partition (at any depth) of a tenant table, created by
  ``CREATE TABLE ... PARTITION OF``, must get ``ENABLE`` and ``FORCE ROW LEVEL
  SECURITY`` in a migration: read by name, a partition answers with its own
  policies, not its parent's. (Tenant tables themselves: rule ``tenant-rls``
  of the conventions check.)

Like the conventions check, statements run as dynamic SQL (``EXECUTE`` in a
``DO`` block or a function) are invisible here; the database tests cover
those (``tests/postgres/test_hardening.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import ast, enums

from platformdb.lint.context import Context
from platformdb.lint.conventions import build_schema
from platformdb.lint.findings import Finding
from platformdb.lint.sqlfiles import SqlFile, Statement, line_of

SECRET_READERS = frozenset({"platform_secret_reader", "platform_token_validator"})
SECRET_COLUMN_RE = re.compile(
    r"^(password_hash|token_hash|credentials|.*_encrypted)$"
    r"|(^|_)(password|passwd|passphrase|secret|private_key|api_key)(_|$)")
UNSAFE_PATH_ENTRIES = ("public", "$user")
PUBLIC = "PUBLIC"
ALL_PRIVILEGES = "all"
SELECTING = ("select", ALL_PRIVILEGES)

Origin = tuple[str, int]  # path, line


def is_secret_column(name: str) -> bool:
    return bool(SECRET_COLUMN_RE.search(name))


# ----------------------------------------------------------------- functions


@dataclass
class Function:
    name: str
    rel: str
    line: int
    definer: bool = False
    search_path: list[str] | None = None


def _qualified(names: tuple[ast.Node, ...] | None) -> str:
    parts = [str(getattr(n, "sval", "")) for n in names or ()]
    return ".".join(parts if len(parts) > 1 else ["public", *parts])


def _type_name(node: ast.TypeName | None) -> str:
    names = node.names if node is not None else None
    return str(getattr(names[-1], "sval", "")) if names else ""


def _signature(name: str, params: tuple[ast.Node, ...] | None) -> str:
    modes = enums.FunctionParameterMode
    kept = (enums.FunctionParameterMode.FUNC_PARAM_IN, modes.FUNC_PARAM_INOUT,
            modes.FUNC_PARAM_VARIADIC, modes.FUNC_PARAM_DEFAULT)
    types = [_type_name(p.argType) for p in params or ()
             if isinstance(p, ast.FunctionParameter) and p.mode in kept]
    return f"{name}({', '.join(types)})"


def _apply_options(function: Function, options: tuple[ast.Node, ...] | None) -> None:
    for item in options or ():
        if not isinstance(item, ast.DefElem):
            continue
        if item.defname == "security" and isinstance(item.arg, ast.Boolean):
            function.definer = bool(item.arg.boolval)
        elif item.defname == "set" and isinstance(item.arg, ast.VariableSetStmt):
            _apply_set(function, item.arg)


def _apply_set(function: Function, stmt: ast.VariableSetStmt) -> None:
    kinds = enums.VariableSetKind
    if stmt.kind == kinds.VAR_RESET_ALL or (stmt.kind == kinds.VAR_RESET
                                            and stmt.name == "search_path"):
        function.search_path = None
    elif stmt.name == "search_path":
        if stmt.kind == kinds.VAR_SET_VALUE:
            function.search_path = [_path_entry(arg) for arg in stmt.args or ()]
        else:  # SET ... FROM CURRENT, SET ... TO DEFAULT: not pinned in the file
            function.search_path = None


def _path_entry(node: ast.Node) -> str:
    value = node.val if isinstance(node, ast.A_Const) else node
    return str(getattr(value, "sval", "")).strip()


def _path_problem(function: Function) -> str | None:
    path = function.search_path
    if not function.definer:
        return None
    if path is None:
        return "SECURITY DEFINER without SET search_path"
    unsafe = [entry for entry in path if entry in UNSAFE_PATH_ENTRIES]
    if unsafe:
        return f"search_path holds {', '.join(unsafe)}, where others may create objects"
    if not path or path[-1] != "pg_temp":
        return ("pg_temp is not last in search_path (unlisted, it is searched first for tables "
                "and types)")
    return None


def _function_findings(ctx: Context) -> list[Finding]:
    final: dict[str, Function] = {}
    for path in ctx.migration_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            node = statement.node
            if isinstance(node, ast.CreateFunctionStmt):
                name = _qualified(node.funcname)
                function = Function(name, sql_file.rel, statement.line)
                _apply_options(function, node.options)
                final[_signature(name, node.parameters)] = function
            elif isinstance(node, ast.AlterFunctionStmt) and node.func is not None:
                key = _signature(_qualified(node.func.objname), node.func.objfuncargs)
                if key in final:
                    _apply_options(final[key], node.actions)
                    final[key].rel, final[key].line = sql_file.rel, statement.line
            elif isinstance(node, ast.DropStmt) and node.removeType in (
                    enums.ObjectType.OBJECT_FUNCTION, enums.ObjectType.OBJECT_PROCEDURE):
                for item in node.objects or ():
                    if isinstance(item, ast.ObjectWithArgs):
                        final.pop(_signature(_qualified(item.objname), item.objfuncargs), None)
    found = [_definer_finding(f) for f in final.values()]
    migrations = {p.resolve() for p in ctx.migration_files()}
    for path in ctx.postgres_files():
        if path.resolve() in migrations or path.name.endswith(".down.sql"):
            continue
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            if isinstance(statement.node, ast.CreateFunctionStmt):
                function = Function(_qualified(statement.node.funcname), sql_file.rel,
                                    statement.line)
                _apply_options(function, statement.node.options)
                found.append(_definer_finding(function))
    return [f for f in found if f is not None]


def _definer_finding(function: Function) -> Finding | None:
    problem = _path_problem(function)
    if problem is None:
        return None
    return Finding(function.rel, function.line, "definer-search-path",
                   f"{function.name}: {problem}; pin SET search_path = pg_catalog, pg_temp and "
                   "qualify every name in the body")


# -------------------------------------------------------------------- grants


@dataclass
class View:
    name: str
    exposes: set[str]  # "table.column" of secret columns it selects with its owner's rights


@dataclass
class Privileges:
    """Who may SELECT what, replayed from GRANT / REVOKE in order."""

    table: dict[tuple[str, str], dict[str, Origin]] = field(default_factory=dict)
    column: dict[tuple[str, str, str], dict[str, Origin]] = field(default_factory=dict)

    def grant(self, role: str, relation: str, privileges: list[tuple[str, list[str]]],
              origin: Origin) -> None:
        for privilege, columns in privileges:
            if columns:
                for column in columns:
                    self.column.setdefault((role, relation, column), {})[privilege] = origin
            else:
                self.table.setdefault((role, relation), {})[privilege] = origin

    def revoke(self, role: str, relation: str, privileges: list[tuple[str, list[str]]]) -> None:
        for privilege, columns in privileges:
            if columns:
                for column in columns:
                    self._drop(self.column.get((role, relation, column)), privilege)
                continue
            self._drop(self.table.get((role, relation)), privilege)
            # revoking a table privilege revokes it on every column too
            for key, held in self.column.items():
                if key[0] == role and key[1] == relation:
                    self._drop(held, privilege)

    @staticmethod
    def _drop(held: dict[str, Origin] | None, privilege: str) -> None:
        if held is None:
            return
        if privilege == ALL_PRIVILEGES:
            held.clear()
            return
        held.pop(privilege, None)
        if privilege == "select":  # ALL included SELECT; only reads matter to this rule
            held.pop(ALL_PRIVILEGES, None)


def _relation(node: ast.Node) -> str | None:
    if isinstance(node, ast.RangeVar) and node.schemaname in (None, "public"):
        return str(node.relname)
    return None


def _grantee(spec: ast.Node) -> str | None:
    if not isinstance(spec, ast.RoleSpec):
        return None
    if spec.roletype == enums.RoleSpecType.ROLESPEC_PUBLIC:
        return PUBLIC
    return str(spec.rolename) if spec.rolename else None


def _privileges(stmt: ast.GrantStmt) -> list[tuple[str, list[str]]]:
    if not stmt.privileges:
        return [(ALL_PRIVILEGES, [])]
    return [(str(p.priv_name or ALL_PRIVILEGES).lower(),
             [str(getattr(c, "sval", "")) for c in p.cols or ()])
            for p in stmt.privileges if isinstance(p, ast.AccessPriv)]


def _view_exposes(node: ast.ViewStmt, secrets_of: dict[str, set[str]]) -> set[str]:
    """Secret columns a view without security_invoker selects (by name, or through *)."""
    for option in node.options or ():
        if isinstance(option, ast.DefElem) and option.defname == "security_invoker" and \
                str(getattr(option.arg, "sval", getattr(option.arg, "boolval", ""))).lower() in (
                    "true", "on", "1", "yes"):
            return set()
    tables: dict[str, str] = {}  # alias or name -> table
    exposed: set[str] = set()
    for sub in _walk(node.query):
        if isinstance(sub, ast.RangeVar) and _relation(sub) in secrets_of:
            name = str(sub.relname)
            tables[str(sub.alias.aliasname) if sub.alias else name] = name
            tables.setdefault(name, name)
    for sub in _walk(node.query):
        if not isinstance(sub, ast.ColumnRef):
            continue
        fields = sub.fields or ()
        last = fields[-1] if fields else None
        qualifier = str(getattr(fields[0], "sval", "")) if len(fields) > 1 else None
        candidates = [tables[qualifier]] if qualifier in tables else (
            [] if qualifier else list(set(tables.values())))
        for table in candidates:
            if isinstance(last, ast.A_Star):
                exposed |= {f"{table}.{c}" for c in secrets_of[table]}
            elif str(getattr(last, "sval", "")) in secrets_of[table]:
                exposed.add(f"{table}.{getattr(last, 'sval', '')}")
    return exposed


def _walk(node: object) -> list[ast.Node]:
    found: list[ast.Node] = []
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, ast.Node):
            found.append(item)
            slots: dict[str, object] = getattr(type(item), "__slots__", {})
            stack.extend(getattr(item, slot, None) for slot in slots)
    return found


def _grant_findings(ctx: Context) -> list[Finding]:
    schema = build_schema(ctx)
    secrets_of = {name: {c for c in table.columns if is_secret_column(c)}
                  for name, table in schema.tables.items()}
    secrets_of = {name: cols for name, cols in secrets_of.items() if cols}
    views: dict[str, View] = {}
    known: set[str] = set(schema.tables)
    held = Privileges()
    found: list[Finding] = []
    for path in ctx.migration_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            node = statement.node
            origin = (sql_file.rel, statement.line)
            if isinstance(node, ast.ViewStmt) and node.view is not None and _relation(node.view):
                name = str(node.view.relname)
                views[name] = View(name, _view_exposes(node, secrets_of))
                known.add(name)
            elif isinstance(node, ast.GrantStmt):
                _replay_grant(node, held, known, origin)
            elif isinstance(node, ast.AlterDefaultPrivilegesStmt) and isinstance(
                    node.action, ast.GrantStmt):
                found.extend(_default_finding(node.action, origin))
            elif isinstance(node, ast.GrantRoleStmt) and node.is_grant:
                found.extend(_membership_findings(node, origin))
    for (role, relation), privileges in held.table.items():
        if role in SECRET_READERS:
            continue
        for privilege, origin in privileges.items():
            if privilege not in SELECTING:
                continue
            exposed = sorted(f"{relation}.{c}" for c in secrets_of.get(relation, ()))
            exposed += sorted(views[relation].exposes) if relation in views else []
            if exposed:
                found.append(_secret_finding(origin, role, relation, exposed))
    for (role, relation, column), privileges in held.column.items():
        if role in SECRET_READERS or column not in secrets_of.get(relation, ()):
            continue
        for privilege, origin in privileges.items():
            if privilege in SELECTING:
                found.append(_secret_finding(origin, role, relation, [f"{relation}.{column}"]))
    return found


def _replay_grant(node: ast.GrantStmt, held: Privileges, known: set[str], origin: Origin) -> None:
    if node.objtype != enums.ObjectType.OBJECT_TABLE:
        return
    if node.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
        schemas = {str(getattr(o, "sval", "")) for o in node.objects or ()}
        relations = sorted(known) if "public" in schemas else []
    else:
        relations = [r for r in (_relation(o) for o in node.objects or ()) if r]
    privileges = _privileges(node)
    for grantee in filter(None, (_grantee(g) for g in node.grantees or ())):
        for relation in relations:
            if node.is_grant:
                held.grant(grantee, relation, privileges, origin)
            else:
                held.revoke(grantee, relation, privileges)


def _default_finding(node: ast.GrantStmt, origin: Origin) -> list[Finding]:
    if not node.is_grant or node.objtype != enums.ObjectType.OBJECT_TABLE:
        return []
    if not any(p in SELECTING for p, _ in _privileges(node)):
        return []
    return [Finding(origin[0], origin[1], "secret-grant",
                    f"ALTER DEFAULT PRIVILEGES grants SELECT on every future table to {role}, "
                    "secret columns included; grant the columns a role needs, table by table")
            for role in filter(None, (_grantee(g) for g in node.grantees or ()))
            if role not in SECRET_READERS]


def _membership_findings(node: ast.GrantRoleStmt, origin: Origin) -> list[Finding]:
    granted = [str(p.priv_name) for p in node.granted_roles or ()
               if isinstance(p, ast.AccessPriv) and p.priv_name in SECRET_READERS]
    return [Finding(origin[0], origin[1], "secret-grant",
                    f"GRANT {role} TO {grantee}: membership hands over what {role} reads, "
                    "secret columns included; grant EXECUTE on its function instead")
            for role in granted
            for grantee in filter(None, (_grantee(g) for g in node.grantee_roles or ()))]


def _secret_finding(origin: Origin, role: str, relation: str, exposed: list[str]) -> Finding:
    return Finding(origin[0], origin[1], "secret-grant",
                   f"{role} may read {', '.join(exposed)} through SELECT on {relation}; grant "
                   "the other columns (GRANT SELECT (col, ...)) and hand secrets out through a "
                   "SECURITY DEFINER function")


# ---------------------------------------------------------------- partitions


@dataclass
class Partition:
    key: str
    parent: str
    rel: str
    line: int
    enabled: bool = False
    forced: bool = False


def _key(relation: ast.RangeVar | None) -> str | None:
    if relation is None:
        return None
    return f"{relation.schemaname or 'public'}.{relation.relname}"


def _partition_findings(ctx: Context) -> list[Finding]:
    tenants = {f"public.{name}" for name, table in build_schema(ctx).tables.items()
               if table.is_tenant}
    parts: dict[str, Partition] = {}
    for path in ctx.migration_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            _replay_partition(sql_file, statement, parts)
    found = []
    for part in parts.values():
        root = part.parent
        while root in parts:
            root = parts[root].parent
        if root not in tenants or (part.enabled and part.forced):
            continue
        missing = [w for w, ok in (("ENABLE", part.enabled), ("FORCE", part.forced)) if not ok]
        found.append(Finding(part.rel, part.line, "partition-rls",
                             f"{part.key}, a partition of tenant table {root}, lacks "
                             f"{' and '.join(missing)} ROW LEVEL SECURITY: read by name it "
                             f"answers without policies; add ALTER TABLE {part.key} "
                             + ", ".join(f"{w} ROW LEVEL SECURITY" for w in missing)))
    return found


def _replay_partition(sql_file: SqlFile, statement: Statement,
                      parts: dict[str, Partition]) -> None:
    node = statement.node
    if isinstance(node, ast.CreateStmt) and node.partbound is not None and node.inhRelations:
        key, parent = _key(node.relation), _key(node.inhRelations[0])
        if key and parent and not (node.if_not_exists and key in parts):
            location = node.relation.location if node.relation else None
            line = line_of(sql_file.sql, location) if location and location > 0 \
                else statement.line
            parts[key] = Partition(key, parent, sql_file.rel, line)
    elif isinstance(node, ast.AlterTableStmt) and _key(node.relation) in parts:
        part = parts[str(_key(node.relation))]
        types = enums.AlterTableType
        for cmd in node.cmds or ():
            if cmd.subtype == types.AT_EnableRowSecurity:
                part.enabled = True
            elif cmd.subtype == types.AT_DisableRowSecurity:
                part.enabled = False
            elif cmd.subtype == types.AT_ForceRowSecurity:
                part.forced = True
            elif cmd.subtype == types.AT_NoForceRowSecurity:
                part.forced = False
    elif isinstance(node, ast.DropStmt) and node.removeType == enums.ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            parts_of = [str(getattr(p, "sval", "")) for p in names] \
                if isinstance(names, tuple) else []
            if parts_of:
                parts.pop(".".join(parts_of if len(parts_of) > 1 else ["public", *parts_of]),
                          None)


def check(ctx: Context) -> list[Finding]:
    return _function_findings(ctx) + _grant_findings(ctx) + _partition_findings(ctx)

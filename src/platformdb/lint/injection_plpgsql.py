"""Dynamic SQL in PL/pgSQL that can carry injected text.

For every PL/pgSQL function and DO block of ``postgresql/**/*.sql``, each
``EXECUTE``, ``RETURN QUERY EXECUTE``, ``FOR ... IN EXECUTE`` and ``OPEN ...
FOR EXECUTE`` is checked. Its SQL text must be built only from:

- constants, values of non-text types (integers, dates, uuids, ``regclass``...)
  and casts to them;
- ``quote_ident`` / ``quote_literal`` / ``quote_nullable``;
- ``format()`` whose ``%s`` arguments are such values (``%I`` and ``%L``
  quote whatever they get);
- local text variables that are themselves only ever assigned such values.

A text parameter, a record field or a text variable filled by a query,
concatenated with ``||`` (or ``concat``) or put through ``format('%s')``, is a
finding: use ``format('%I', ...)`` for identifiers, ``format('%L', ...)`` or
``EXECUTE ... USING`` for values. Executing a parameter as a whole
(``EXECUTE sql_text``) is not flagged: nothing is built here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast
from pglast.parser import ParseError

from platformdb.lint.context import Context
from platformdb.lint.findings import Finding
from platformdb.lint.sqlfiles import SqlFile, Statement, body_line, function_name

RULE = "sql-injection"
SAFE_TYPES = frozenset({
    "int2", "int4", "int8", "smallint", "integer", "int", "bigint", "numeric", "decimal",
    "float4", "float8", "real", "double precision", "bool", "boolean", "date", "time",
    "timetz", "timestamp", "timestamptz", "timestamp with time zone",
    "timestamp without time zone", "interval", "uuid", "oid", "regclass", "regtype",
    "regproc", "regprocedure", "regnamespace", "regrole", "serial", "bigserial",
})
QUOTING = frozenset({"quote_ident", "quote_literal", "quote_nullable"})
DYNAMIC = {
    "PLpgSQL_stmt_dynexecute": "query",
    "PLpgSQL_stmt_dynfors": "query",
    "PLpgSQL_stmt_return_query": "dynquery",
    "PLpgSQL_stmt_open": "dynquery",
}
_ASSIGN_RE = re.compile(r"^\s*[\w\"$.]+(?:\[[^\]]*\])?\s*:?=\s*", re.S)
_FORMAT_SPEC_RE = re.compile(r"%(?:(?P<pos>\d+)\$)?[-]?(?:\d+|\*(?:\d+\$)?)?(?P<type>[sIL%])")


@dataclass
class Variable:
    name: str
    type: str
    param: bool
    assignments: list[str] = field(default_factory=list)
    unknown: bool = False  # filled by a query (INTO, FOR loops, FETCH)


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for path in ctx.postgres_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            tree = sql_file.plpgsql(statement)
            if isinstance(tree, list):
                findings.extend(_check_function(sql_file, statement, tree))
    return findings


def _check_function(sql_file: SqlFile, statement: Statement,
                    tree: list[dict[str, Any]]) -> list[Finding]:
    function = tree[0].get("PLpgSQL_function", {}) if tree else {}
    variables = _variables(function)
    safe = _safe_variables(variables)
    first = body_line(sql_file, statement)
    findings: list[Finding] = []
    for kind, node in _walk(function.get("action")):
        key = DYNAMIC.get(kind)
        expr = node.get(key) if key else None
        query = expr.get("PLpgSQL_expr", {}).get("query") if isinstance(expr, dict) else None
        if not isinstance(query, str):
            continue
        unsafe = _unsafe_parts(query, variables, safe, dynamic=True)
        if unsafe:
            line = first + int(node.get("lineno", 1)) - 1
            findings.append(Finding(
                sql_file.rel, line, RULE,
                f"{function_name(statement.node)}: EXECUTE builds SQL from "
                f"{', '.join(sorted(set(unsafe)))}; quote with format('%I'/'%L', ...) "
                "or pass values with EXECUTE ... USING"))
    return findings


def _walk(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(PLpgSQL_stmt_kind, fields)`` in a PL/pgSQL tree."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("PLpgSQL_stmt_") and isinstance(value, dict):
                yield key, value
            yield from _walk(value)


def _variables(function: dict[str, Any]) -> dict[int, Variable]:
    variables: dict[int, Variable] = {}
    for number, datum in enumerate(function.get("datums", [])):
        var = datum.get("PLpgSQL_var")
        if var is None:
            continue
        typename = var.get("datatype", {}).get("PLpgSQL_type", {}).get("typname", "")
        variable = Variable(str(var.get("refname", "")), _normal_type(str(typename)),
                            param="lineno" not in var)
        default = var.get("default_val", {}).get("PLpgSQL_expr", {}).get("query")
        if isinstance(default, str):
            variable.assignments.append(default)
        variables[number] = variable
    for kind, node in _walk(function.get("action")):
        if kind == "PLpgSQL_stmt_assign":
            target = variables.get(int(node.get("varno", -1)))
            query = node.get("expr", {}).get("PLpgSQL_expr", {}).get("query", "")
            if target is not None:
                target.assignments.append(_ASSIGN_RE.sub("", str(query), count=1))
        else:
            for varno in _targets(node):
                if varno in variables:
                    variables[varno].unknown = True
    return variables


def _targets(node: dict[str, Any]) -> Iterator[int]:
    """Variables a statement fills from a query (INTO, loop variables, FETCH)."""
    for key in ("target", "var"):
        value = node.get(key)
        if not isinstance(value, dict):
            continue
        for row in value.values():
            if isinstance(row, dict):
                for item in row.get("fields", []):
                    yield int(item.get("varno", -1))
                if "dno" in row:
                    yield int(row["dno"])
    if "curvar" in node and node.get("is_move") is None and "target" in node:
        yield int(node["curvar"])


def _normal_type(typename: str) -> str:
    name = typename.lower().removeprefix("pg_catalog.").strip('"')
    return re.sub(r"\(.*\)$", "", name).strip()


def _safe_variables(variables: dict[int, Variable]) -> set[str]:
    """Text variables whose every assignment is safe (greatest fixpoint)."""
    safe = {v.name for v in variables.values() if not v.param and not v.unknown}
    changed = True
    while changed:
        changed = False
        for variable in variables.values():
            if variable.name in safe and variable.type not in SAFE_TYPES and any(
                    _unsafe_parts(a, variables, safe, dynamic=False)
                    for a in variable.assignments):
                safe.discard(variable.name)
                changed = True
    return safe


def _unsafe_parts(expression: str, variables: dict[int, Variable], safe: set[str],
                  dynamic: bool) -> list[str]:
    """Names of the non-constant text pieces an expression builds SQL from."""
    try:
        select = pglast.parse_sql(f"SELECT {expression}")[0].stmt
    except ParseError:
        return []
    if not isinstance(select, ast.SelectStmt) or not select.targetList:
        return []
    node = select.targetList[0].val
    by_name = {v.name: v for v in variables.values()}
    if dynamic and isinstance(node, ast.ColumnRef | ast.ParamRef):
        variable = by_name.get(_ref_name(node))
        if variable is None or variable.param:
            return []  # executing a string handed in as a whole builds nothing here
    return _Judge(by_name, safe).unsafe(node)


def _ref_name(node: ast.Node) -> str:
    if isinstance(node, ast.ParamRef):
        return f"${node.number}"
    if isinstance(node, ast.ColumnRef):
        return ".".join(str(getattr(f, "sval", "*")) for f in node.fields or ())
    return ""


@dataclass
class _Judge:
    variables: dict[str, Variable]
    safe: set[str]

    def unsafe(self, node: Any) -> list[str]:
        if node is None or isinstance(node, ast.A_Const | str | int | float | bool):
            return []
        if isinstance(node, tuple | list):
            return [part for item in node for part in self.unsafe(item)]
        if isinstance(node, ast.TypeCast):
            name = _type_name(node.typeName)
            return [] if name in SAFE_TYPES else self.unsafe(node.arg)
        if isinstance(node, ast.ColumnRef | ast.ParamRef):
            return self._reference(_ref_name(node))
        if isinstance(node, ast.FuncCall):
            return self._call(node)
        if isinstance(node, ast.SubLink):
            return ["a subquery"]
        if isinstance(node, ast.NullTest | ast.BoolExpr):
            return []
        if isinstance(node, ast.Node):
            return [part for name in node for part in self.unsafe(getattr(node, name))
                    if not name.endswith("location")]
        return []

    def _reference(self, name: str) -> list[str]:
        variable = self.variables.get(name)
        if variable is None:
            return [name]  # a record field or an unknown name
        if variable.type in SAFE_TYPES or variable.name in self.safe:
            return []
        return [name]

    def _call(self, node: ast.FuncCall) -> list[str]:
        name = str(node.funcname[-1].sval).lower() if node.funcname else ""
        args = list(node.args or ())
        if name in QUOTING:
            return []
        if name == "format" and args:
            return self._format(args)
        return self.unsafe(args)

    def _format(self, args: list[ast.Node]) -> list[str]:
        template = args[0]
        if not (isinstance(template, ast.A_Const) and isinstance(template.val, ast.String)):
            return self.unsafe(template)
        unsafe: list[str] = []
        position = 1
        for spec in _FORMAT_SPEC_RE.finditer(str(template.val.sval)):
            if spec["type"] == "%":
                continue
            index = int(spec["pos"]) if spec["pos"] else position
            position = index + 1
            if spec["type"] == "s" and index < len(args):
                unsafe.extend(self.unsafe(args[index]))
        return unsafe


def _type_name(type_name: ast.TypeName | None) -> str:
    if type_name is None or not type_name.names:
        return ""
    return _normal_type(str(type_name.names[-1].sval))

"""Python that builds SQL from strings (``src/**/*.py``).

A call ``<x>.execute(sql, ...)`` (also ``executemany``, ``query``,
``command``, ``copy``) is a finding when ``sql`` is built with an f-string,
``%``, ``+`` or ``str.format`` from a part that is not a constant:

- constants are literals, UPPER_CASE names (module constants, imported or
  not), ``module.UPPER_CASE`` attributes, ``int()``/``len()`` results, and
  local variables whose every assignment is itself constant (``scope = "a" if
  x else "b"``, ``for table in TABLES``);
- ``psycopg.sql`` objects (``sql.SQL(...).format(sql.Identifier(x))``) are the
  safe way to put identifiers in SQL, and any call whose name contains
  ``quote`` counts as quoting.

Query parameters (``execute("... %s", (value,))``) are not string building.
Waive one call with ``# lint: allow sql-injection <reason>``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from platformdb.lint.context import PYTHON_DIR, Context
from platformdb.lint.findings import Finding

RULE = "sql-injection"
SQL_METHODS = frozenset({"execute", "executemany", "query", "command", "copy"})
SQL_KEYWORDS = ("query", "sql", "statement", "cmd")
PSYCOPG_SQL = frozenset({"SQL", "Identifier", "Literal", "Placeholder", "Composed", "Composable"})
SAFE_BUILTINS = frozenset({"int", "float", "len", "bool", "round", "abs"})


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for path in ctx.files(PYTHON_DIR, "**/*.py"):
        findings.extend(check_file(ctx.rel(path), path))
    return findings


def check_file(rel: str, path: Path) -> list[Finding]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return [Finding(rel, exc.lineno or 1, "python-syntax", str(exc.msg))]
    module = _Scope.of(tree.body)
    findings: list[Finding] = []
    for node, scope in _calls(tree, module):
        argument = _sql_argument(node)
        if argument is None:
            continue
        parts = _Checker(scope, module).built_from(argument)
        if parts:
            method = node.func.attr if isinstance(node.func, ast.Attribute) else "execute"
            findings.append(Finding(
                rel, node.lineno, RULE,
                f"SQL passed to {method}() is built from {', '.join(sorted(set(parts)))}; "
                "use query parameters or psycopg.sql.Identifier/Literal"))
    return findings


def _sql_argument(call: ast.Call) -> ast.expr | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in SQL_METHODS:
        return None
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in SQL_KEYWORDS:
            return keyword.value
    return None


@dataclass
class _Scope:
    """Names assigned in a function (or module) body, with every assigned value."""

    assigned: dict[str, list[ast.expr | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: list[ast.stmt], params: ast.arguments | None = None) -> _Scope:
        scope = cls()
        if params is not None:
            for arg in [*params.posonlyargs, *params.args, *params.kwonlyargs,
                        *[a for a in (params.vararg, params.kwarg) if a]]:
                scope.assigned.setdefault(arg.arg, []).append(None)
        for statement in body:
            for node in _walk_local(statement):
                scope._record(node)
        return scope

    def _record(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._target(target, node.value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
            self._target(node.target, node.value)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self._target(node.target, node.iter)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self._target(item.optional_vars, None)
        elif isinstance(node, ast.NamedExpr):
            self._target(node.target, node.value)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                self.assigned.setdefault((alias.asname or alias.name).split(".")[0], [])

    def _target(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:  # unpacking: each element from an unknown value
                self._target(element, value if isinstance(value, ast.Tuple | ast.List)
                             and _all_constant_literals(value) else None)


def _all_constant_literals(value: ast.Tuple | ast.List) -> bool:
    return all(isinstance(e, ast.Constant) for e in value.elts)


def _walk_local(node: ast.AST) -> list[ast.AST]:
    """Nodes of a body, not descending into nested functions or classes."""
    found: list[ast.AST] = [node]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
        return found
    for child in ast.iter_child_nodes(node):
        found.extend(_walk_local(child))
    return found


def _calls(tree: ast.Module, module: _Scope) -> list[tuple[ast.Call, _Scope]]:
    found: list[tuple[ast.Call, _Scope]] = []

    def visit(body: list[ast.stmt], scope: _Scope) -> None:
        for statement in body:
            for node in _walk_local(statement):
                if isinstance(node, ast.Call):
                    found.append((node, scope))
                if node is not statement and isinstance(node, ast.FunctionDef
                                                        | ast.AsyncFunctionDef):
                    visit(node.body, _Scope.of(node.body, node.args))
                elif node is not statement and isinstance(node, ast.ClassDef):
                    visit(node.body, module)
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(statement.body, _Scope.of(statement.body, statement.args))
            elif isinstance(statement, ast.ClassDef):
                visit(statement.body, module)

    visit(tree.body, module)
    return found


@dataclass
class _Checker:
    scope: _Scope
    module: _Scope
    resolving: set[str] = field(default_factory=set)

    def built_from(self, node: ast.expr) -> list[str]:
        """Non-constant parts when ``node`` builds a string; [] otherwise."""
        if isinstance(node, ast.JoinedStr):
            return [p for v in node.values if isinstance(v, ast.FormattedValue)
                    for p in self.parts(v.value)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
            if isinstance(node.op, ast.Mod) and not self._stringish(node.left):
                return []
            return self.parts(node.left) + self.parts(node.right)
        if _is_str_format(node):
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            return self.parts(node.func.value) + [
                p for a in [*node.args, *(k.value for k in node.keywords)] for p in self.parts(a)]
        if _is_psycopg_sql(node, "SQL"):
            assert isinstance(node, ast.Call)
            return self.built_from(node.args[0]) if node.args else []
        if isinstance(node, ast.Name) and node.id in self.scope.assigned \
                and node.id not in self.resolving:
            self.resolving.add(node.id)
            try:
                return [p for value in self.scope.assigned[node.id] if value is not None
                        for p in self.built_from(value)]
            finally:
                self.resolving.discard(node.id)
        return []

    def _stringish(self, node: ast.expr) -> bool:
        return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(
            node, ast.JoinedStr | ast.Name | ast.BinOp)

    def parts(self, node: ast.expr) -> list[str]:
        """The non-constant pieces of ``node`` (empty when it is constant)."""
        if isinstance(node, ast.Constant):
            return []
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            return [] if node.attr.isupper() else [ast.unparse(node)]
        if isinstance(node, ast.JoinedStr):
            return [p for v in node.values if isinstance(v, ast.FormattedValue)
                    for p in self.parts(v.value)]
        if isinstance(node, ast.FormattedValue):
            return self.parts(node.value)
        if isinstance(node, ast.BinOp):
            return self.parts(node.left) + self.parts(node.right)
        if isinstance(node, ast.IfExp):
            return self.parts(node.body) + self.parts(node.orelse)
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return [p for e in node.elts for p in self.parts(e)]
        if isinstance(node, ast.Call):
            return self._call(node)
        return [ast.unparse(node)]

    def _call(self, node: ast.Call) -> list[str]:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if _is_psycopg_sql(node) or "quote" in name.lower() or name in SAFE_BUILTINS:
            return []
        if isinstance(func, ast.Attribute) and not self.parts(func.value):
            # a method of a constant: ", ".join(COLUMNS), PREFIX.upper()
            return [p for a in [*node.args, *(k.value for k in node.keywords)]
                    for p in self.parts(a)]
        return [ast.unparse(node)]

    def _name(self, name: str) -> list[str]:
        if name in self.resolving:
            return []
        values = self.scope.assigned.get(name)
        if values is None:
            values = self.module.assigned.get(name)
            if values is None or name.isupper() or _is_module_constant(values):
                return []  # a module constant, an import or a builtin
        if name.isupper() and self.scope is self.module:
            return []
        if not values or any(value is None for value in values):
            return [name]
        self.resolving.add(name)
        try:
            return [name] if any(self.parts(value) for value in values if value) else []
        finally:
            self.resolving.discard(name)


def _is_module_constant(values: list[ast.expr | None]) -> bool:
    return len(values) == 1 and isinstance(values[0], ast.Constant)


def _is_str_format(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and not _is_psycopg_sql(node.func.value))


def _is_psycopg_sql(node: ast.expr, only: str | None = None) -> bool:
    """``sql.SQL(...)``, ``sql.Identifier(...)``... and ``.format``/``.join`` of them."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if only is not None:
        return name == only
    if name in PSYCOPG_SQL:
        return True
    return (isinstance(func, ast.Attribute) and name in ("format", "join")
            and _is_psycopg_sql(func.value))

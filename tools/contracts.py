"""The package's layers, checked: which part may import which, and no import cycles.

Run by ``./scripts/test.sh lint``::

    python tools/contracts.py            # exit 1 and one line per broken contract
    python tools/contracts.py --map      # the package map the README shows (generated here)

Every import counts: function-local ones and ``if TYPE_CHECKING:`` ones too --
moving an import into a function hides a dependency from Python, not from the
design. A part is a top-level module or sub-package of ``platformdb``; the
layers below list them bottom up with what each may import. Besides:

- the runtime packages a service imports (``postgres``, ``redis``,
  ``clickhouse``) import nothing of each other;
- no module imports another in a circle (Tarjan's strongly connected
  components over the module graph, not just the parts).
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "platformdb"


@dataclass(frozen=True)
class Layer:
    name: str
    parts: tuple[str, ...]
    may: tuple[str, ...]
    """The layers it may import besides its own."""
    what: str
    independent: bool = False
    """Its parts may not import each other (the runtime packages)."""


LAYERS = (
    Layer("leaf", ("errors", "redaction", "resources", "types", "config", "extras", "binaries",
                   "locks", "render", "progress", "journal"), (),
          "errors and hints, result types, settings, data files, optional extras, the one "
          "finder of external programs, file locks, result rendering, the progress protocol "
          "long work reports through, intent journals of multi-step operations"),
    Layer("runtime", ("postgres", "redis", "clickhouse"), ("leaf",),
          "what services import: tenant transactions and pools; sessions, cache, rate limits, "
          "queues, events; the ClickHouse client, MetricsWriter, reports", independent=True),
    Layer("service", ("auth", "secrets"), ("leaf", "runtime"),
          "passwords and tokens; envelope encryption of tenants' secrets"),
    Layer("machinery", ("migrate", "backup", "tenant"), ("leaf",),
          "generic over stores: the migration engine and Driver protocol; backup manifests, "
          "archives, sets and the staged switch; the tenant archive format"),
    Layer("stores", ("stores",), ("leaf", "runtime", "service", "machinery"),
          "one folder per store (its Store object, migration driver and planner, backup and "
          "staged restore, tenant data, metrics, console, tools) and the registry"),
    Layer("stack", ("embedded",), ("leaf", "runtime", "stores"),
          "the embedded stack: PostgreSQL, a Redis-compatible server, PgBouncer, chDB's path"),
    Layer("tools", ("lint", "docs_gen"), ("leaf", "runtime", "machinery", "stores"),
          "the repository's own tools: SQL and Lua lint, the schema docs generator"),
    Layer("ops", ("ops",), ("leaf", "runtime", "service", "machinery", "stores", "stack",
                            "tools"),
          "one function per command, over a context resolved once at the edge"),
    Layer("cli", ("cli", "__main__"), ("leaf", "ops"),
          "the command: parse, call one ops function, render"),
)
RESULT_TYPES = {"platformdb.migrate.planning", "platformdb.lint.findings"}
"""Result types the CLI renders, taken from the module that defines them."""
ROOT_FACE = "platformdb"
"""The package itself (``__version__``): anyone may import it."""


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def graph(package_dir: Path) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (at any depth)."""
    paths = {module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1]
                                    + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in paths else base)
        resolved = set()
        for target in targets:
            while target and target not in paths:
                target = target.rpartition(".")[0]
            if target and target != name:
                resolved.add(target)
        found[name] = resolved
    return found


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


LAYER_OF = {part: layer for layer in LAYERS for part in layer.parts}


def violations(modules: dict[str, set[str]]) -> list[str]:
    """One line per import that breaks a contract, then one per circle of modules."""
    problems = []
    for source, targets in sorted(modules.items()):
        here = part_of(source)
        if here is None:
            continue
        layer = LAYER_OF.get(here)
        if layer is None:
            problems.append(f"{source}: platformdb.{here} is in no layer (tools/contracts.py)")
            continue
        for target in sorted(targets):
            there = part_of(target)
            if there is None or there == here or target == ROOT_FACE:
                continue
            other = LAYER_OF.get(there)
            if other is None:
                continue  # reported as its own source
            if layer.name == "cli" and target in RESULT_TYPES:
                continue
            if other is layer:
                if layer.independent:
                    problems.append(f"{source} imports {target}: the {layer.name} parts "
                                    "import nothing of each other")
                continue
            if other.name not in layer.may:
                problems.append(f"{source} imports {target}: {layer.name} may import "
                                f"{', '.join(layer.may) or 'nothing of ours'} only, not "
                                f"{other.name}")
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(modules))
    return problems


def cycles(modules: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(modules.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(modules.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def package_map() -> str:
    """The README's map of the package, top layer first: each layer's parts, what it is,
    and what it may import (the contracts themselves, so the map cannot drift)."""
    lines = []
    for layer in reversed(LAYERS):
        names = "  ".join(f"{part}/" if (Path(__file__).resolve().parents[1] / "src" / PACKAGE
                                          / part).is_dir() else part for part in layer.parts)
        lines.append(f"{layer.name:<10}{names}")
        may = ", ".join(layer.may) if layer.may else "nothing of ours"
        rule = " (its parts import nothing of each other)" if layer.independent else ""
        text = f"{layer.what}; imports {may}{rule}"
        lines.extend(textwrap.wrap(text, 88, initial_indent=" " * 10,
                                   subsequent_indent=" " * 10))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--map", action="store_true", help="print the package map")
    args = parser.parse_args(argv)
    if args.map:
        sys.stdout.write(package_map())
        return 0
    problems = violations(graph(args.root / "src" / PACKAGE))
    for problem in problems:
        print(f"contracts: {problem}", file=sys.stderr)
    if not problems:
        print("contracts: every import keeps to its layer; no cycles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

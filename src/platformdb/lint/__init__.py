"""``platformdb lint``: every SQL and Lua file checked without a server.

Checks (one module each), selectable by name:

==================== =========================================================
``postgres-syntax``  PostgreSQL files through the real parser (pglast)
``clickhouse-syntax`` ClickHouse files through ClickHouse's parser (chDB)
``migration-safety`` dangerous operations in migrations (Squawk)
``injection``        dynamic SQL in PL/pgSQL, Lua keys from ARGV
``migration-order``  numbering, down files, no edits to migrations on main
``conventions``      tenant tables: org_id, RLS, policies, indexes, FKs
``security``         definer search_path, secret columns granted, partition RLS
==================== =========================================================

A finding can be waived in its file with ``-- lint: allow <rule> <reason>``;
see :mod:`platformdb.lint.waivers`. Python is ruff's job (``S608`` for SQL
built from strings), run beside this by ``./scripts/test.sh lint``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from platformdb.errors import ConfigError, Hint
from platformdb.lint import (
    ch_syntax,
    conventions,
    injection_lua,
    injection_plpgsql,
    migration_order,
    migration_safety,
    pg_syntax,
    security,
    waivers,
)
from platformdb.lint.context import Context
from platformdb.lint.findings import Finding, blocking, format_json, format_text, summary

__all__ = [
    "CHECKS",
    "Finding",
    "blocking",
    "find_root",
    "format_json",
    "format_text",
    "run_lint",
    "summary",
]

Check = Callable[[Context], list[Finding]]


def _injection(ctx: Context) -> list[Finding]:
    return injection_plpgsql.check(ctx) + injection_lua.check(ctx)


CHECKS: dict[str, Check] = {
    "postgres-syntax": pg_syntax.check,
    "clickhouse-syntax": ch_syntax.check,
    "migration-safety": migration_safety.check,
    "injection": _injection,
    "migration-order": migration_order.check,
    "conventions": conventions.check,
    "security": security.check,
}


def run_lint(root: Path, rules: Iterable[str] | None = None,
             paths: Iterable[Path] | None = None) -> list[Finding]:
    """Run the checks named in ``rules`` (default: all) over the tree at ``root``.

    ``paths`` (files or folders) keeps only the findings inside them; the
    checks still read the whole tree, as migration order and conventions
    need every migration. Returns the findings sorted by path and line,
    waived ones removed; :func:`blocking` tells which fail the run.
    """
    selected = list(CHECKS) if rules is None else list(dict.fromkeys(rules))
    unknown = [name for name in selected if name not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown lint check {', '.join(unknown)}; "
                          f"choose from {', '.join(CHECKS)}")
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the repository's root")
    ctx = Context(root)
    findings: list[Finding] = []
    for name in selected:
        findings.extend(CHECKS[name](ctx))
    findings = waivers.apply(ctx, findings, report_unused=rules is None and paths is None)
    if paths is not None:
        findings = _inside(ctx, findings, list(paths))
    return sorted(set(findings))


def _inside(ctx: Context, findings: list[Finding], paths: list[Path]) -> list[Finding]:
    wanted = [ctx.rel(path if path.is_absolute() else Path.cwd() / path) for path in paths]
    return [f for f in findings
            if any(w in (".", "") or f.path == w or f.path.startswith(w.rstrip("/") + "/")
                   for w in wanted)]


def find_root(start: Path | None = None) -> Path:
    """The repository root: ``start`` (default: the cwd) or the nearest parent
    holding ``postgresql/migrations``; else the checkout of this package."""
    from platformdb.resources import repo_root

    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "postgresql" / "migrations").is_dir():
            return folder
    checkout = repo_root()
    if checkout is not None:
        return checkout
    raise ConfigError(f"no postgresql/migrations folder in {here} or its parents; "
                      "lint inside the repository", hint=Hint(flag="--root", does="to name it"))

"""Dangerous migration operations, through Squawk, configured for this repository.

Squawk runs on the up files of ``postgresql/migrations`` (down files undo a
migration and drop things by nature). Its policy here:

- ``--assume-in-transaction`` for every file the engine wraps in a
  transaction (all but ``-- platformdb: no-transaction`` files). Squawk then
  knows that a table created earlier in the same file is new and empty, so an
  index or foreign key on it needs no ``CONCURRENTLY``/``NOT VALID``: the
  initial schema is clean while the same statement on an existing table is
  still reported.
- ``CREATE INDEX ... ON ONLY parent`` is not reported for lacking
  ``CONCURRENTLY``: it builds nothing (the index on the partitioned parent
  stays invalid until each partition's index, built concurrently, is
  attached), and PostgreSQL does not accept ``CONCURRENTLY`` there.
- Squawk's own ``syntax-error`` is dropped: the real PostgreSQL parser
  (check ``postgres-syntax``) is authoritative.
- Partitioned tables (``CREATE TABLE ... PARTITION BY`` in any migration):
  PostgreSQL has no ``CREATE INDEX CONCURRENTLY`` for them, so Squawk's
  advice does not apply. A ``CREATE INDEX`` on one in a later migration is
  reported as ``require-online-index``, pointing to the ``-- platformdb:
  online-index`` directive (the index ``ON ONLY`` the parent, built
  concurrently on each partition, then attached); ``CREATE INDEX
  CONCURRENTLY`` on one is ``concurrent-index-on-partitioned-table`` (an
  error: PostgreSQL refuses it). In an ``online-index`` file the engine builds
  every index concurrently, so ``require-concurrent-index-creation`` does not
  apply there; each statement must be a named ``CREATE INDEX`` on the table
  (not ``ON ONLY``), else ``online-index-statement``.
- Excluded rules, each with its reason, are :data:`EXCLUDED_RULES`;
  ``.squawk.toml`` at the repository root holds the same policy for running
  ``squawk`` by hand or in an editor.

Every other default rule stays: index creation without ``CONCURRENTLY`` on an
existing table, a ``NOT NULL`` column with a volatile default, column type
changes, constraints without ``NOT VALID``, ``SET NOT NULL``, renames,
drops, ``int`` counters, ``timestamp`` without time zone...
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pglast import ast

from platformdb import binaries
from platformdb.errors import ConfigError, MigrationError
from platformdb.lint.context import Context
from platformdb.lint.findings import Finding, Severity
from platformdb.migrate.files import OUTSIDE_TRANSACTION, parse_directives
from platformdb.stores.postgres.online_index import online_index_problem

PG_VERSION = "15.0"
EXCLUDED_RULES: dict[str, str] = {
    "require-lock-timeout": (
        "the migration engine sets lock_timeout itself (SET LOCAL, 5s) around every file"
    ),
    "require-statement-timeout": (
        "the migration engine sets statement_timeout itself (SET LOCAL, 15min) around every file"
    ),
    "prefer-text-field": (
        "the spec's columns are varchar(n); widening one is a metadata-only change since "
        "PostgreSQL 9.2, and narrowing one gets its own migration"
    ),
    "ban-char-field": (
        "char(n) holds fixed-width values only: hex SHA-256 token hashes, ISO 4217 currency codes"
    ),
}
SQUAWK_TIMEOUT = 300


def check(ctx: Context) -> list[Finding]:
    in_transaction: list[Path] = []
    standalone: list[Path] = []
    online: set[Path] = set()
    for path in ctx.migration_files():
        try:
            directives = parse_directives(path.read_text(encoding="utf-8"), path)
        except MigrationError:
            directives = {}  # reported by the migration-order check
        outside = any(key in directives for key in OUTSIDE_TRANSACTION)
        (standalone if outside else in_transaction).append(path)
        if "online-index" in directives:
            online.add(path.resolve())
    partitioned = partitioned_tables(ctx)
    findings: list[Finding] = []
    for paths, assume in ((in_transaction, True), (standalone, False)):
        if paths:
            findings.extend(_run(ctx, paths, assume, partitioned, online))
    findings.extend(_online_index_findings(ctx, online, partitioned))
    return findings


def _table_key(node: Any) -> str:
    """A table as statements name it: ``campaign_metrics`` for ``public.campaign_metrics``."""
    name = str(node.relname)
    return name if node.schemaname in (None, "", "public") else f"{node.schemaname}.{name}"


def partitioned_tables(ctx: Context) -> dict[str, Path]:
    """Every table a migration creates ``PARTITION BY``, with the file that creates it."""
    found: dict[str, Path] = {}
    for path in ctx.migration_files():
        sql_file = ctx.sql(path)
        for statement in sql_file.statements:
            node = statement.node
            if isinstance(node, ast.CreateStmt) and node.partspec is not None \
                    and node.relation is not None:
                found.setdefault(_table_key(node.relation), path.resolve())
    return found


def _online_index_findings(ctx: Context, online: set[Path],
                           partitioned: dict[str, Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in ctx.migration_files():
        resolved = path.resolve()
        for statement in ctx.sql(path).statements:
            node: Any = statement.node
            if resolved in online:
                problem = online_index_problem(node)
                if problem:
                    findings.append(Finding(ctx.rel(path), statement.line,
                                            "online-index-statement", problem))
                continue
            if not isinstance(node, ast.IndexStmt) or node.relation is None:
                continue
            table = _table_key(node.relation)
            if node.concurrent and node.relation.inh and table in partitioned:
                findings.append(Finding(
                    ctx.rel(path), statement.line, "concurrent-index-on-partitioned-table",
                    f"PostgreSQL refuses CREATE INDEX CONCURRENTLY on partitioned table {table};"
                    f" write it in a `-- platformdb: online-index` migration: {ONLINE_INDEX}"))
    return findings


ONLINE_INDEX = ("the index is created ON ONLY the parent, built CONCURRENTLY on each partition "
                "and attached (docs/MIGRATIONS.md, online indexes on partitioned tables)")


def squawk_command(paths: list[Path], assume_in_transaction: bool) -> list[str]:
    return [
        binaries.squawk(), "--reporter", "json", "--pg-version", PG_VERSION,
        "--config", str(_empty_config()),
        "--exclude", ",".join(sorted(EXCLUDED_RULES)),
        "--assume-in-transaction" if assume_in_transaction else "--no-assume-in-transaction",
        *[str(path) for path in paths],
    ]


def _empty_config() -> Path:
    # An explicit, empty config: the policy comes from this module alone, never
    # from a .squawk.toml that squawk would otherwise discover above the cwd.
    return Path(__file__).with_name("squawk-empty.toml")


def _run(ctx: Context, paths: list[Path], assume_in_transaction: bool,
         partitioned: dict[str, Path] | None = None,
         online: set[Path] | None = None) -> list[Finding]:
    result = subprocess.run(squawk_command(paths, assume_in_transaction), capture_output=True,
                            text=True, timeout=SQUAWK_TIMEOUT, check=False, cwd=ctx.root)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        message = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
        raise ConfigError(f"squawk failed (exit {result.returncode}): {message[0]}")
    findings: list[Finding] = []
    for item in json.loads(result.stdout):
        rule = str(item["rule_name"])
        path = Path(str(item["file"]))
        if not path.is_absolute():
            path = ctx.root / path
        line = int(item["line"]) + 1  # squawk's lines are 0-based
        if rule == "syntax-error" or _builds_nothing(ctx, path, line, rule):
            continue
        if rule == "require-concurrent-index-creation" and online and path.resolve() in online:
            continue  # the engine builds every index of an online-index file concurrently
        help_text = f" ({item['help']})" if item.get("help") else ""
        severity: Severity = "error" if str(item.get("level")) == "Error" else "warning"
        table = _partitioned_target(ctx, path, line, rule, partitioned or {})
        if table is not None:
            findings.append(Finding(
                ctx.rel(path), line, "require-online-index",
                f"CREATE INDEX on partitioned table {table} builds the index of every partition"
                " while writes to them wait, and PostgreSQL cannot build it CONCURRENTLY on a"
                f" partitioned table: put it in a `-- platformdb: online-index` migration:"
                f" {ONLINE_INDEX}", severity))
            continue
        findings.append(Finding(ctx.rel(path), line, rule, f"{item['message']}{help_text}",
                                severity))
    return findings


def _partitioned_target(ctx: Context, path: Path, line: int, rule: str,
                        partitioned: dict[str, Path]) -> str | None:
    """The partitioned table a ``require-concurrent-index-creation`` finding is about."""
    if rule != "require-concurrent-index-creation":
        return None
    statement = ctx.sql(path).statement_at(line)
    if statement is None or not isinstance(statement.node, ast.IndexStmt):
        return None
    relation: Any = statement.node.relation
    if relation is None:
        return None
    table = _table_key(relation)
    return table if table in partitioned else None


def _builds_nothing(ctx: Context, path: Path, line: int, rule: str) -> bool:
    """A ``require-concurrent-index-creation`` on ``CREATE INDEX ... ON ONLY``."""
    if rule != "require-concurrent-index-creation":
        return False
    statement = ctx.sql(path).statement_at(line)
    return (statement is not None and isinstance(statement.node, ast.IndexStmt)
            and statement.node.relation is not None and not statement.node.relation.inh)

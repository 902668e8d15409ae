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
import shutil
import subprocess
import sys
from pathlib import Path

from pglast import ast

from platformdb.errors import ConfigError, MigrationError
from platformdb.lint.context import Context
from platformdb.lint.findings import Finding, Severity
from platformdb.migrate.files import parse_directives

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


def squawk_binary() -> str:
    """The ``squawk`` of this environment (the ``lint`` extra), else PATH's."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise ConfigError("squawk is not installed; run pip install 'platformdb[lint]' "
                          "(the squawk-cli wheel)")
    return found


def check(ctx: Context) -> list[Finding]:
    in_transaction: list[Path] = []
    standalone: list[Path] = []
    for path in ctx.migration_files():
        try:
            directives = parse_directives(path.read_text(encoding="utf-8"), path)
        except MigrationError:
            directives = {}  # reported by the migration-order check
        (standalone if "no-transaction" in directives else in_transaction).append(path)
    findings: list[Finding] = []
    for paths, assume in ((in_transaction, True), (standalone, False)):
        if paths:
            findings.extend(_run(ctx, paths, assume))
    return findings


def squawk_command(paths: list[Path], assume_in_transaction: bool) -> list[str]:
    return [
        squawk_binary(), "--reporter", "json", "--pg-version", PG_VERSION,
        "--config", str(_empty_config()),
        "--exclude", ",".join(sorted(EXCLUDED_RULES)),
        "--assume-in-transaction" if assume_in_transaction else "--no-assume-in-transaction",
        *[str(path) for path in paths],
    ]


def _empty_config() -> Path:
    # An explicit, empty config: the policy comes from this module alone, never
    # from a .squawk.toml that squawk would otherwise discover above the cwd.
    return Path(__file__).with_name("squawk-empty.toml")


def _run(ctx: Context, paths: list[Path], assume_in_transaction: bool) -> list[Finding]:
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
        help_text = f" ({item['help']})" if item.get("help") else ""
        severity: Severity = "error" if str(item.get("level")) == "Error" else "warning"
        findings.append(Finding(ctx.rel(path), line, rule, f"{item['message']}{help_text}",
                                severity))
    return findings


def _builds_nothing(ctx: Context, path: Path, line: int, rule: str) -> bool:
    """A ``require-concurrent-index-creation`` on ``CREATE INDEX ... ON ONLY``."""
    if rule != "require-concurrent-index-creation":
        return False
    statement = ctx.sql(path).statement_at(line)
    return (statement is not None and isinstance(statement.node, ast.IndexStmt)
            and statement.node.relation is not None and not statement.node.relation.inh)

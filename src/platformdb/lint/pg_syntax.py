"""PostgreSQL syntax through the real PostgreSQL parser (pglast).

Every ``postgresql/**/*.sql`` file is parsed as a whole (psql meta-commands
of SQL tests are blanked first, see :mod:`platformdb.lint.sqlfiles`), and the
body of every PL/pgSQL function and DO block is parsed too, since the SQL
parser sees a body only as a string. PL/pgSQL errors carry no position, so
they point at the function's first line.

Migration files run through the engine, not psql, so two more things are
errors there: psql meta-commands, and transaction control (``BEGIN``,
``COMMIT``...), which the engine refuses because it wraps each file itself.
"""

from __future__ import annotations

from pglast import ast

from platformdb.lint.context import Context
from platformdb.lint.findings import Finding
from platformdb.lint.sqlfiles import SqlFile, SyntaxProblem, function_name

RULE = "pg-syntax"
MIGRATIONS = "postgresql/migrations/"


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for path in ctx.postgres_files():
        sql_file = ctx.sql(path)
        if sql_file.rel.startswith(MIGRATIONS):
            findings.extend(_migration_findings(sql_file))
        if sql_file.error is not None:
            findings.append(Finding(sql_file.rel, sql_file.error.line, RULE,
                                    sql_file.error.message))
            continue
        for statement in sql_file.statements:
            tree = sql_file.plpgsql(statement)
            if isinstance(tree, SyntaxProblem):
                findings.append(Finding(
                    sql_file.rel, tree.line, RULE,
                    f"in the PL/pgSQL body of {function_name(statement.node)}: {tree.message}"))
    return findings


def _migration_findings(sql_file: SqlFile) -> list[Finding]:
    findings = [
        Finding(sql_file.rel, number, "migration-psql-command",
                "psql meta-commands do not run in a migration; the engine executes SQL only")
        for number, (original, stripped) in enumerate(
            zip(sql_file.text.split("\n"), sql_file.sql.split("\n"), strict=False), start=1)
        if original.lstrip().startswith("\\") and not stripped
    ]
    findings += [
        Finding(sql_file.rel, statement.line, "migration-transaction-control",
                "BEGIN/COMMIT/ROLLBACK in a migration: the engine runs each file in one "
                "transaction itself (or none, with '-- platformdb: no-transaction')")
        for statement in sql_file.statements if isinstance(statement.node, ast.TransactionStmt)
    ]
    return findings

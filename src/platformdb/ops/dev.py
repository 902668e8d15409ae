"""``platformdb docs | lint``: the repository's own tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platformdb import docs_gen
from platformdb import lint as linter
from platformdb.errors import when_interrupted
from platformdb.lint.findings import Finding
from platformdb.ops.context import Context, context
from platformdb.types import Endpoints


@dataclass
class Docs:
    """What ``platformdb docs`` wrote (or, with ``check``, found current)."""

    schema_md: Path
    changed: bool
    tables: list[str]
    """The reference files of ``postgresql/schemas/`` written."""


def docs(target: Context | Endpoints, root: Path | None = None, *,
         check: bool = False) -> Docs:
    """Regenerate docs/SCHEMA.md and postgresql/schemas/ from a scratch database built by
    the migrations; with ``check``, only compare (:class:`~platformdb.errors.CheckFailed`
    when stale)."""
    ctx = context(target)
    repo = linter.find_root(root)
    with docs_gen.scratch_database(ctx.url("postgresql"),
                                   repo / "postgresql" / "migrations") as url:
        text = docs_gen.generate_schema_md(
            url, docs_gen.clickhouse_tables_from_ddl(repo / "clickhouse"),
            repo / "redis" / "schemas")
        tables = docs_gen.table_ddl(url)
    schema_md = repo / "docs" / "SCHEMA.md"
    with when_interrupted("the generated files may be partly written: run it again"):
        changed = docs_gen.write_schema_md(text, schema_md, check=check)
        renewed = docs_gen.write_table_ddl(tables, repo / "postgresql" / "schemas",
                                           check=check)
    return Docs(schema_md, changed, renewed)


def lint(root: Path | None = None, *, rules: list[str] | None = None,
         paths: list[Path] | None = None) -> list[Finding]:
    """Every finding of the SQL and Lua checks in the repository at ``root`` (an explicit
    root is the tree to lint; otherwise the one around the working directory)."""
    repo = root.resolve() if root is not None else linter.find_root()
    return linter.run_lint(repo, rules=rules, paths=paths)

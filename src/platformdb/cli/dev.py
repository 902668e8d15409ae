"""`platformdb docs | lint`: the repository's own tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from platformdb.cli.base import (
    JsonOption,
    app,
    endpoints,
    postgres_url,
    show,
)
from platformdb.errors import CheckFailed, ConfigError


@app.command()
def docs(
    check: Annotated[bool, typer.Option("--check",
                                        help="Fail if docs/SCHEMA.md is stale.")] = False,
    root_dir: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
) -> None:
    """Regenerate docs/SCHEMA.md from a scratch database built by the migrations."""
    from platformdb import docs_gen
    from platformdb.lint import find_root

    repo = find_root(root_dir)
    found = endpoints(start=True, stores=["postgresql"])
    with docs_gen.scratch_database(postgres_url(found), repo / "postgresql" / "migrations") as url:
        text = docs_gen.generate_schema_md(
            url, docs_gen.clickhouse_tables_from_ddl(repo / "clickhouse"),
            repo / "redis" / "schemas")
        tables = docs_gen.table_ddl(url)
    target = repo / "docs" / "SCHEMA.md"
    changed = docs_gen.write_schema_md(text, target, check=check)
    renewed = docs_gen.write_table_ddl(tables, repo / "postgresql" / "schemas", check=check)
    if check:
        show(f"{target} and postgresql/schemas/ are up to date")
        return
    show(f"{target} {'written' if changed else 'unchanged'}; "
              f"postgresql/schemas/: {len(renewed)} file(s) written")


@app.command()
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Only report inside these.")] = None,
    check: Annotated[list[str] | None, typer.Option(
        "--check", "-c", help="Run only this check (repeatable).")] = None,
    root_dir: Annotated[Path | None, typer.Option("--root", help="Repository root.")] = None,
    as_json: JsonOption = False,
    fmt: Annotated[str, typer.Option("--format", help="text | json (json is for tools).")] = "text",
) -> None:
    """Lint SQL, Lua and Python: syntax, migration safety, injection, order, conventions."""
    from platformdb import lint as linter

    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    if root_dir is not None and not root_dir.is_dir():
        raise ConfigError(f"--root {root_dir} is not a folder")
    # An explicit --root is the tree to lint; otherwise walk up from the cwd.
    repo = root_dir.resolve() if root_dir is not None else linter.find_root()
    findings = linter.run_lint(repo, rules=check, paths=paths)
    if as_json or fmt == "json":
        print(linter.format_json(findings))
    else:
        sys.stdout.write(linter.format_text(findings))
    if linter.blocking(findings):
        raise CheckFailed(f"lint: {len(linter.blocking(findings))} problem(s)")


# ---------------------------------------------------------------------- main

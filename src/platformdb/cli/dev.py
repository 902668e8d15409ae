"""`platformdb docs | lint`: the repository's own tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from platformdb.cli.base import (
    JsonOption,
    app,
    context,
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
    from platformdb.ops import dev  # pglast and the linters: only these commands

    done = dev.docs(context(start=True, stores=["postgresql"]), root_dir, check=check)
    if check:
        show(f"{done.schema_md} and postgresql/schemas/ are up to date")
        return
    show(f"{done.schema_md} {'written' if done.changed else 'unchanged'}; "
         f"postgresql/schemas/: {len(done.tables)} file(s) written")


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
    from platformdb.lint.findings import blocking, format_json, format_text
    from platformdb.ops import dev  # pglast and the linters: only these commands

    if fmt not in ("text", "json"):
        raise ConfigError(f"--format must be text or json, not {fmt!r}")
    if root_dir is not None and not root_dir.is_dir():
        raise ConfigError(f"--root {root_dir} is not a folder")
    findings = dev.lint(root_dir, rules=check, paths=paths)
    if as_json or fmt == "json":
        print(format_json(findings))
    else:
        sys.stdout.write(format_text(findings))
    if blocking(findings):
        raise CheckFailed(f"lint: {len(blocking(findings))} problem(s)")

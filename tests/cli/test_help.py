"""Help that wraps at the terminal's width, and shell completion of what the commands take."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from rich.text import Text
from typer.testing import CliRunner

from platformdb.cli import app
from platformdb.cli.base import unwrapped
from tests.test_cli import all_commands


def prose(command: object) -> list[str]:
    """The prose paragraphs of a command's docstring (not its indented example blocks),
    each as the words a reader sees."""
    callback = getattr(command, "callback", None)
    doc = inspect.getdoc(callback) if callback is not None else None
    if not doc:
        return []
    found = []
    for paragraph in doc.split("\n\n"):
        if any(line.startswith(" ") for line in paragraph.splitlines()):
            continue
        words = " ".join(Text.from_markup(paragraph.replace("\\\\", "\\")).plain.split())
        found.append(words)
    return found


def test_unwrapping_joins_prose_and_keeps_example_blocks() -> None:
    doc = """First line.

    A sentence that the author
    broke in the middle.

    [bold]Examples[/]

      platformdb x        does x
      platformdb y        does y
    """
    assert unwrapped(doc).split("\n\n") == [
        "First line.", "A sentence that the author broke in the middle.", "[bold]Examples[/]",
        "  platformdb x        does x\n  platformdb y        does y"]


@pytest.mark.slow
def test_every_help_paragraph_is_one_line_on_a_wide_terminal() -> None:
    root = typer.main.get_command(app)
    runner = CliRunner()
    for path in all_commands():
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        paragraphs = prose(command)
        if not paragraphs:
            continue
        shown = runner.invoke(app, [*path, "--help"], terminal_width=400,
                              env={"COLUMNS": "400"}).output
        lines = [" ".join(line.strip(" │").split()) for line in shown.splitlines()]
        for paragraph in paragraphs:
            assert any(paragraph in line for line in lines), (path, paragraph, shown)


def complete(words: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers after ``words`` (completion keys on the program name)."""
    script = Path(sys.executable).with_name("platformdb")
    typed = words.split(" ")
    values = {**os.environ, "_PLATFORMDB_COMPLETE": "complete_bash", "COMP_WORDS": words,
              "COMP_CWORD": str(len(typed) - 1), **(env or {})}
    result = subprocess.run([str(script)], env=values, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.slow
def test_completion_offers_store_names(tmp_path: Path) -> None:
    assert complete("platformdb health --store p", tmp_path) == ["postgresql"]
    assert complete("platformdb shell ", tmp_path) == ["postgresql", "clickhouse", "redis"]
    assert complete("platformdb backup ", tmp_path) == ["postgresql", "clickhouse", "redis",
                                                       "all"]
    assert complete("platformdb migrate down --store ", tmp_path) == ["postgresql",
                                                                      "clickhouse"]


@pytest.mark.slow
def test_completion_offers_backup_sets_archives_and_dumps(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    for name in ("set-20260101T000000Z", "postgresql-20260102T000000Z"):
        (backups / name).mkdir(parents=True)
    (backups / "clickhouse-20260103T000000Z.tar").touch()
    (backups / "platformdb-backups.json").touch()  # the record of good backups: not a backup
    (tmp_path / "backup-2026-01-06.sql").touch()
    assert complete("platformdb restore all ", tmp_path) == [
        "backups/clickhouse-20260103T000000Z.tar", "backups/postgresql-20260102T000000Z",
        "backups/set-20260101T000000Z"]
    assert complete("platformdb restore all backups/s", tmp_path) == [
        "backups/set-20260101T000000Z"]
    assert complete("platformdb restore postgresql backup-", tmp_path) == [
        "backup-2026-01-06.sql"]


@pytest.mark.slow
def test_completion_offers_org_slugs(migrated_url: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES ('Acme', 'acme'),"
                     " ('Acorn', 'acorn'), ('Globex', 'globex')")
    env = {"PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_HOME": str(tmp_path)}
    assert complete("platformdb tenant show ac", tmp_path, env) == ["acme", "acorn"]
    assert complete("platformdb tenant export ", tmp_path, env) == ["acme", "acorn", "globex"]
    # no database to ask: nothing offered, and no error in the shell
    down = {"PLATFORMDB_POSTGRES_URL": "postgresql://x@127.0.0.1:1/db",
            "PLATFORMDB_HOME": str(tmp_path)}
    assert complete("platformdb tenant show ", tmp_path, down) == []

"""A migration that exists on main must not be edited; new ones are fine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from platformdb.lint import blocking, run_lint

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
         "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose main branch holds migration 001."""
    folder = tmp_path / "postgresql" / "migrations"
    folder.mkdir(parents=True)
    (folder / "001_init.sql").write_text(
        "-- platformdb: no-down the first schema\n-- Why: the first table.\n"
        "CREATE TABLE IF NOT EXISTS a (id bigint PRIMARY KEY);\n")
    git(tmp_path, "init", "--quiet", "--initial-branch=main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "--quiet", "-m", "001")
    return tmp_path


def order_findings(root: Path) -> set[tuple[str, int, str]]:
    return {(f.path, f.line, f.rule) for f in run_lint(root, rules=["migration-order"])}


def test_unchanged_checkout_is_clean(repo: Path) -> None:
    assert order_findings(repo) == set()


def test_edited_applied_migration_is_caught(repo: Path) -> None:
    path = repo / "postgresql" / "migrations" / "001_init.sql"
    path.write_text(path.read_text().replace("bigint", "integer"))
    assert order_findings(repo) == {
        ("postgresql/migrations/001_init.sql", 3, "migration-edited")}


def test_edit_committed_on_a_branch_is_caught(repo: Path) -> None:
    git(repo, "checkout", "--quiet", "-b", "feature")
    path = repo / "postgresql" / "migrations" / "001_init.sql"
    path.write_text(path.read_text() + "CREATE INDEX IF NOT EXISTS i ON a (id);\n")
    git(repo, "commit", "--quiet", "-am", "edit 001")
    assert order_findings(repo) == {
        ("postgresql/migrations/001_init.sql", 4, "migration-edited")}


def test_new_migration_is_not_an_edit(repo: Path) -> None:
    git(repo, "checkout", "--quiet", "-b", "feature")
    (repo / "postgresql" / "migrations" / "002_more.sql").write_text(
        "-- platformdb: no-down nothing to undo\n-- Why: more.\nSELECT 1;\n")
    assert order_findings(repo) == set()


def test_deleted_applied_migration_is_caught(repo: Path) -> None:
    (repo / "postgresql" / "migrations" / "001_init.sql").unlink()
    assert ("postgresql/migrations/001_init.sql", 0, "migration-deleted") in order_findings(repo)


def test_origin_main_is_the_base_when_it_exists(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    path = clone / "postgresql" / "migrations" / "001_init.sql"
    path.write_text(path.read_text() + "-- a comment is an edit too\n")
    git(clone, "commit", "--quiet", "-am", "edit on local main")
    assert order_findings(clone) == {
        ("postgresql/migrations/001_init.sql", 4, "migration-edited")}


def test_outside_git_the_check_is_skipped_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "postgresql" / "migrations").mkdir(parents=True)
    findings = run_lint(tmp_path, rules=["migration-order"])
    assert [f.rule for f in findings] == ["migration-immutability-skipped"]
    assert blocking(findings) == []

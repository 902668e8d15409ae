"""Waiving one finding in the file, with a reason."""

from __future__ import annotations

from pathlib import Path

from platformdb.lint import blocking, run_lint

INDEX_ON_EXISTING_TABLE = "CREATE INDEX IF NOT EXISTS idx_t_a ON t (a);\n"


def migrations(root: Path, *files: tuple[str, str]) -> Path:
    folder = root / "postgresql" / "migrations"
    folder.mkdir(parents=True)
    for name, text in files:
        (folder / name).write_text(text)
    return root


def rules_at(root: Path, check: str) -> set[tuple[int, str]]:
    return {(f.line, f.rule) for f in blocking(run_lint(root, rules=[check]))}


def test_waiver_on_the_line_before_the_statement_waives_it(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n"
                                 "-- lint: allow require-concurrent-index-creation t is tiny\n"
                                 + INDEX_ON_EXISTING_TABLE))
    assert rules_at(root, "migration-safety") == set()


def test_waiver_on_the_same_line_waives_it(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n" + INDEX_ON_EXISTING_TABLE.rstrip()
                                 + "  -- lint: allow require-concurrent-index-creation tiny\n"))
    assert rules_at(root, "migration-safety") == set()


def test_waiver_covers_a_finding_inside_a_multiline_statement(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n"
                                 "-- lint: allow prefer-bigint-over-int counts stay small\n"
                                 "CREATE TABLE IF NOT EXISTS t (\n"
                                 "    id bigint PRIMARY KEY,\n"
                                 "    n integer NOT NULL\n"
                                 ");\n"))
    assert rules_at(root, "migration-safety") == set()


def test_waiver_for_another_rule_waives_nothing(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n"
                                 "-- lint: allow changing-column-type not this one\n"
                                 + INDEX_ON_EXISTING_TABLE))
    assert rules_at(root, "migration-safety") == {(3, "require-concurrent-index-creation")}


def test_waiver_further_away_waives_nothing(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n"
                                 "-- lint: allow require-concurrent-index-creation tiny\n"
                                 "SELECT 1;\n" + INDEX_ON_EXISTING_TABLE))
    assert (4, "require-concurrent-index-creation") in rules_at(root, "migration-safety")


def test_waiver_without_a_reason_is_a_finding_and_waives_nothing(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- Why.\n"
                                 "-- lint: allow require-concurrent-index-creation\n"
                                 + INDEX_ON_EXISTING_TABLE))
    assert rules_at(root, "migration-safety") == {
        (2, "waiver-without-reason"), (3, "require-concurrent-index-creation")}


def test_unused_waiver_is_reported_when_every_check_runs(tmp_path: Path) -> None:
    root = migrations(tmp_path, ("001_x.sql", "-- platformdb: no-down nothing to undo\n"
                                 "-- lint: allow changing-column-type nothing changes here\n"
                                 "SELECT 1;\n"))
    findings = blocking(run_lint(root))
    assert {(f.path, f.line, f.rule) for f in findings} == {
        ("postgresql/migrations/001_x.sql", 2, "waiver-unused")}

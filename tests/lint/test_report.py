"""The text and JSON reports, and the run_lint entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platformdb.errors import ConfigError
from platformdb.lint import Finding, blocking, find_root, format_json, format_text, run_lint

FINDINGS = [
    Finding("b.sql", 3, "fk-index", "no index"),
    Finding("a.sql", 10, "prefer-bigint-over-int", "int", "warning"),
    Finding("clickhouse", 0, "ch-cluster-skipped", "no renderer", "info"),
]


def test_text_report_is_one_line_per_finding_then_a_summary() -> None:
    assert format_text(FINDINGS).splitlines() == [
        "a.sql:10: prefer-bigint-over-int: int",
        "b.sql:3: fk-index: no index",
        "clickhouse:0: ch-cluster-skipped: no renderer",
        "lint: 2 problems (1 error, 1 warning) in 2 files, 1 note",
    ]


def test_text_report_without_findings_says_so() -> None:
    assert format_text([]) == "lint: no problems found\n"


def test_json_report_has_findings_and_counts() -> None:
    document = json.loads(format_json(FINDINGS))
    assert document["summary"] == {"error": 1, "warning": 1, "info": 1, "files": 2, "ok": False}
    assert document["findings"][0] == {"path": "a.sql", "line": 10,
                                       "rule": "prefer-bigint-over-int", "message": "int",
                                       "severity": "warning"}


def test_notes_do_not_fail_a_run() -> None:
    assert blocking(FINDINGS) == FINDINGS[:2]


def test_unknown_check_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown lint check"):
        run_lint(tmp_path, rules=["spelling"])


def test_missing_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        run_lint(tmp_path / "nowhere")


def test_paths_keep_only_findings_inside_them(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "postgres-syntax" / "fail"
    findings = run_lint(fixture, rules=["postgres-syntax"],
                        paths=[fixture / "postgresql" / "functions"])
    assert [f.path for f in findings] == ["postgresql/functions/broken_body.sql"]


def test_find_root_walks_up_to_the_migrations_folder(tmp_path: Path) -> None:
    (tmp_path / "postgresql" / "migrations").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    assert find_root(tmp_path / "docs") == tmp_path.resolve()

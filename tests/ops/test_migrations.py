"""The spec's SQL test command works on the embedded stack after `migrate up`:
``psql -h localhost -U platform -d platform_test -f postgresql/tests/test_users.sql``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb import embedded
from platformdb.migrate import discover, migrations_dir
from tests.test_cli import REPO

SPEC_COMMAND = "psql -h localhost -U platform -d platform_test -f postgresql/tests/test_users.sql"


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[Path]:
    """An embedded stack of this test's own (platform_test is a fixed name)."""
    path = cluster_dir / "stack"
    yield path
    embedded.down(path)


def platformdb(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORMDB_", "PG"))}
    env["PLATFORMDB_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_spec_command_passes_on_platform_test_after_migrate_up(home: Path) -> None:
    up = platformdb(home, "migrate", "up", "--store", "postgresql")
    assert up.returncode == 0, up.stderr
    last = discover(migrations_dir("postgresql"))[-1].label
    assert f"postgresql/platform_test: applied {last}" in up.stdout
    exports = platformdb(home, "env")
    assert exports.returncode == 0, exports.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORMDB_", "PG"))}
    result = subprocess.run(["bash", "-c", f'eval "$1" && {SPEC_COMMAND}', "spec",
                             exports.stdout], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "ERROR" not in result.stderr
    # and it changed nothing it should not have: the test rolls back
    with psycopg.connect(embedded.EmbeddedPostgres(home).url("platform_test")) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    again = platformdb(home, "migrate", "up", "--store", "postgresql")
    assert again.returncode == 0 and "nothing to do" in again.stdout

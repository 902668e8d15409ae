"""The wheel carries the SQL and Lua files, and an installed package finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = ("postgresql", "clickhouse", "redis")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    [built] = out.glob("platformdb-*.whl")
    return built


def test_every_data_file_of_the_checkout_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *DATA], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked, "no data files tracked"
    missing = [f for f in tracked if f"platformdb/_data/{f}" not in names]
    assert missing == []


def test_an_installed_wheel_finds_migrations_and_scripts(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = (
        "from platformdb.migrate import discover, migrations_dir\n"
        "from platformdb.redis import library\n"
        "print(migrations_dir('postgresql'))\n"
        "print(len(discover(migrations_dir('postgresql'))),"
        " len(discover(migrations_dir('clickhouse'))), len(library().functions))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    where, counts = result.stdout.splitlines()
    assert where.startswith(str(tmp_path / "site")), where  # the wheel's copy, not the checkout
    files = {store: len(list((REPO / store / "migrations").glob("[0-9]*.sql")))
             for store in ("postgresql", "clickhouse")}
    up = {store: n - len(list((REPO / store / "migrations").glob("*.down.sql")))
          for store, n in files.items()}
    lua = len(list((REPO / "redis" / "scripts").glob("*.lua"))) - 1  # one is the preamble
    assert counts.split() == [str(up["postgresql"]), str(up["clickhouse"]), str(lua)]

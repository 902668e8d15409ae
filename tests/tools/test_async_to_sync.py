"""tools/async_to_sync.py: the blocking modules are generated from the asyncio ones."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "async_to_sync.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("async_to_sync", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["async_to_sync"] = module
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          cwd=REPO, check=False)


def test_every_generated_module_is_up_to_date() -> None:
    result = run("--check")
    assert result.returncode == 0, result.stderr


def test_every_generated_module_says_so_and_names_its_source() -> None:
    for conversion in tool.CONVERSIONS:
        head = (REPO / conversion.target).read_text().splitlines()[:2]
        assert head[0] == (f"# Generated from {Path(conversion.source).name} by "
                           "tools/async_to_sync.py: do not edit.")


@pytest.mark.slow
def test_check_fails_when_a_generated_module_is_stale(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "src" / "platformdb" / "redis" / "sessions.py"
    target.write_text(target.read_text().replace("def revoke_all(", "def revoke_every("))
    result = run("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "stale: src/platformdb/redis/sessions.py" in result.stderr
    assert run("--root", str(tmp_path)).returncode == 0  # regenerates it
    assert run("--check", "--root", str(tmp_path)).returncode == 0
    assert "def revoke_all(" in target.read_text()


def test_a_hand_written_file_claiming_to_be_generated_is_reported(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    stray = tmp_path / "src" / "platformdb" / "stray.py"
    stray.write_text(f"# Generated from x_async.py {tool.MARK}\n")
    result = run("--check", "--root", str(tmp_path))
    assert result.returncode == 1 and "stray.py says it is generated" in result.stderr


SOURCE = '''"""An AsyncThing over an AsyncClient; await thing.get() returns a value."""

from collections.abc import AsyncIterator, Awaitable, Callable

from platformdb.redis._acompat import AEvent, asleep
from platformdb.redis.widget_async import helper


class AsyncThing:
    def __init__(self, make: Callable[[], Awaitable[int]]) -> None:
        self.event = AEvent()  # why: a comment survives
        self.make = make

    async def get(self) -> int:
        async with self.lock:
            value = await self.make()  # type: ignore[misc]
        await asleep(0.1)
        return int(await helper(value))

    async def each(self) -> AsyncIterator[int]:
        async for item in self.items():
            yield item

    async def __aenter__(self) -> "AsyncThing":
        return self
'''


def test_conversion_drops_async_and_renames_to_the_blocking_names() -> None:
    out = tool.convert(SOURCE, {}, "thing_async.py")
    assert out.startswith("# Generated from thing_async.py by tools/async_to_sync.py")
    assert '"""An Thing over an SyncClient; thing.get() returns a value."""' in out
    assert "from platformdb.redis._acompat import Event, sleep" in out
    assert "from platformdb.redis.widget import helper" in out
    assert "class Thing:" in out
    assert "make: Callable[[], int]" in out
    assert "self.event = Event()  # why: a comment survives" in out
    assert "    def get(self) -> int:\n        with self.lock:" in out
    assert "value = self.make()  # type: ignore[misc]" in out
    assert "sleep(0.1)" in out and "return int(helper(value))" in out
    assert "def each(self) -> Iterator[int]:\n        for item in self.items():" in out
    assert 'def __enter__(self) -> "Thing":' in out
    assert "await" not in out and "async " not in out


def test_output_that_still_needs_asyncio_is_refused() -> None:
    with pytest.raises(tool.ConversionError, match="asyncio"):
        tool.convert("import asyncio\n\nasync def f() -> None:\n    await asyncio.sleep(1)\n",
                     {}, "f_async.py")


@pytest.mark.slow
def test_imports_are_sorted_again_after_the_renames() -> None:
    code = tool.convert("from m import AsyncClient, Library\n\nx: AsyncClient | Library\n",
                        {}, "m_async.py")
    fixed = tool.sort_imports(code, REPO / "src" / "platformdb" / "m.py")
    assert "from m import Library, SyncClient" in fixed

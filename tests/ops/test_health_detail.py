"""`platformdb health` says everything: replication as words (also "no replicas"), the chDB
lock's state, and a detail column that is never cut, piped or on a narrow terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platformdb import embedded
from platformdb.redaction import redact
from platformdb.stores import ClickHouseStore, PostgresStore
from platformdb.stores.postgres import replication_summary
from tests.ops.test_replication import primary_and_standby, wait_for

__all__ = ["primary_and_standby"]  # the fixture, used below
REPO = Path(__file__).resolve().parents[2]


def environment(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}, **extra}


def test_a_server_without_replicas_says_so(migrated_url: str) -> None:
    result = PostgresStore(migrated_url).health()
    assert result.healthy and result.detail == "ok (no replicas)"


@pytest.mark.slow
def test_replicas_and_their_lag_are_named_on_the_primary_and_the_standby(
        primary_and_standby: tuple[embedded.EmbeddedPostgres, embedded.EmbeddedPostgres]) -> None:
    primary, standby = primary_and_standby
    assert wait_for(lambda: replication_summary(primary.url()).startswith("1 replica,"))
    assert replication_summary(primary.url()) == "1 replica, max lag 0.0 s"
    health = PostgresStore(primary.url()).health()
    assert health.detail.endswith("; 1 replica, max lag 0.0 s")  # pending migrations first
    assert replication_summary(standby.url()).startswith("standby, ")
    assert replication_summary(standby.url()).endswith(" bytes received but not replayed, "
                                                       "no replicas")


def test_chdb_health_says_the_path_was_free(tmp_path: Path) -> None:
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.stores.clickhouse.driver import ClickHouseDriver

    url = f"chdb://{tmp_path / 'ch'}"
    from platformdb.clickhouse import connect

    with connect(url) as client:
        Migrator(ClickHouseDriver(client), discover(migrations_dir("clickhouse"))[:1]).up()
    store = ClickHouseStore(url, home=tmp_path)
    store.migrations = lambda: discover(migrations_dir("clickhouse"))[:1]  # type: ignore[method-assign]
    result = store.health()
    assert result.healthy, result.detail
    assert result.detail == "ok (chDB: the path was free, no other process holds it)"


@pytest.mark.slow
def test_chdb_health_names_the_process_that_holds_the_path(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'ch'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom platformdb.clickhouse import connect\n"
         f"with connect({url!r}):\n    print('open', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        result = ClickHouseStore(url, home=tmp_path).health()
        assert not result.healthy
        assert f"in use by process {holder.pid}" in result.detail
    finally:
        holder.kill()
        holder.wait()


def column_cells(screen: str, column: int) -> list[str]:
    """One column of each body row of a rich table, its wrapped lines joined."""
    rows: list[list[str]] = []
    for line in screen.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0]:  # a new row (its first cell holds the store's name)
            rows.append([])
        rows[-1].append(cells[column])
    return [" ".join(part for part in parts if part) for parts in rows]


@pytest.mark.slow
def test_the_detail_is_never_cut_on_an_80_column_terminal_or_when_piped(pg_url: str) -> None:
    env = environment({"PLATFORMDB_POSTGRES_URL": pg_url, "COLUMNS": "80", "TERM": "dumb",
                       "NO_COLOR": "1"})
    expected = "7 migration(s) not applied, first 001_init_schema (pending); no replicas"
    piped = subprocess.run([sys.executable, "-m", "platformdb.cli", "health", "--store",
                            "postgresql"], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 1
    assert expected.replace("7", str(_pending())) in piped.stdout  # one line, whole
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "platformdb.cli", "health", "--store",
                                "postgresql"], stdin=child, stdout=child, stderr=subprocess.PIPE,
                               env=env, cwd=REPO, close_fds=True)
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(main)
    text = screen.decode().replace("\r", "")
    assert max(len(line) for line in text.splitlines()) <= 80
    [detail] = column_cells(text, -1)
    assert detail.replace(" ", "") == expected.replace("7", str(_pending())).replace(" ", "")
    [target] = column_cells(text, -2)  # a URL: one long word, folded rather than cut
    assert target.replace(" ", "") == redact(pg_url)


def _pending() -> int:
    from platformdb.migrate import discover, migrations_dir

    return len(discover(migrations_dir("postgresql")))

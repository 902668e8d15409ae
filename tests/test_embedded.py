"""The embedded stack: idempotent up, crash recovery, down stops only its own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import redis
from platformdb import binaries, embedded


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[Path]:
    path = cluster_dir / "stack"
    yield path
    embedded.down(path)


def running(home: Path) -> dict[str, int | None]:
    return {s.name: s.pid for s in embedded.status(home) if s.name != "clickhouse"
            and (s.name != "pgbouncer" or binaries.pgbouncer())}


def wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 30
    while embedded.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_up_twice_is_harmless_and_serves_both_databases(home: Path, stack_home: Path) -> None:
    first = embedded.up(home)
    pids = running(home)
    assert all(pids.values())
    again = embedded.up(home)
    assert running(home) == {s.name: s.pid for s in again if s.name in pids}
    pg = embedded.EmbeddedPostgres(home)
    for database in ("platform_dev", "platform_test"):
        with psycopg.connect(pg.url(database)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("platform",)
    assert redis.Redis.from_url(embedded.EmbeddedRedis(home).url()).ping()
    assert (home / "clickhouse").is_dir()
    assert {s.name for s in first} == {"postgresql", "pgbouncer", "redis", "clickhouse"}
    # a second stack picked ports that do not collide with the session's stack
    assert pg.port != embedded.EmbeddedPostgres(stack_home).port


@pytest.mark.slow
def test_a_crashed_stack_recovers_on_the_next_up(home: Path) -> None:
    embedded.up(home)
    before = running(home)
    for pid in before.values():
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
    assert (home / "postgres" / "data" / "postmaster.pid").exists()  # stale pid file left
    assert not any(s.running for s in embedded.status(home) if s.name != "clickhouse")
    embedded.up(home)
    after = running(home)
    assert all(after.values()) and after != before
    with psycopg.connect(embedded.EmbeddedPostgres(home).url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
def test_down_stops_what_up_started_and_nothing_else(home: Path, stack_home: Path) -> None:
    embedded.up(home)
    with_bouncer = ["pgbouncer"] if binaries.pgbouncer() else []  # up runs it when installed
    assert sorted(embedded.down(home)) == [*with_bouncer, "postgresql", "redis"]
    assert embedded.down(home) == []
    assert not any(s.running for s in embedded.status(home) if s.name != "clickhouse")
    # the session's own stack is untouched
    with psycopg.connect(embedded.EmbeddedPostgres(stack_home).url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_endpoints_keep_configured_urls_and_start_nothing(tmp_path: Path) -> None:
    from platformdb.config import Settings

    configured = Settings(home=tmp_path / "unused", postgres_url="postgresql://u@h/db",
                          redis_url="redis://h/0", clickhouse_url="http://ch:8123/p")
    found = embedded.endpoints(configured, start=True)
    assert (found.postgres, found.redis, found.clickhouse) == (
        "postgresql://u@h/db", "redis://h/0", "http://ch:8123/p")
    assert not (tmp_path / "unused" / "postgres").exists()


def test_endpoints_without_start_report_a_stopped_stack_instead_of_starting_it(
        tmp_path: Path) -> None:
    from platformdb.config import Settings

    (tmp_path / "stopped").mkdir()
    found = embedded.endpoints(Settings(home=tmp_path / "stopped"), start=False)
    assert found.postgres is None and found.redis is None
    assert found.missing("postgresql") == "embedded PostgreSQL is not running"
    assert found.clickhouse is None  # chDB would create its folder: a look must not
    assert "has no data" in found.missing("clickhouse")
    assert not (tmp_path / "stopped" / "postgres").exists()
    assert not (tmp_path / "stopped" / "clickhouse").exists()
    (tmp_path / "stopped" / "clickhouse").mkdir()
    found = embedded.endpoints(Settings(home=tmp_path / "stopped"), start=False)
    assert found.clickhouse == f"chdb://{tmp_path / 'stopped' / 'clickhouse'}"


def test_endpoints_with_no_stack_at_all_say_so(tmp_path: Path) -> None:
    from platformdb.config import Settings

    found = embedded.endpoints(Settings(home=tmp_path / "elsewhere"), start=False)
    for store in ("postgresql", "clickhouse", "redis"):
        assert f"no embedded stack at {tmp_path / 'elsewhere'}" in found.missing(store)
    assert not (tmp_path / "elsewhere").exists()
    assert embedded.down(tmp_path / "elsewhere") == []
    assert not (tmp_path / "elsewhere").exists()

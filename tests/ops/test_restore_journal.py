"""A restore killed (kill -9) at any phase: afterwards every store is all-old or all-new and
none is missing; after `platformdb recover` the restore is finished or rolled back, nothing
is left over and health is green.

The CLI runs in a subprocess with ``PLATFORMDB_CRASH_AT=<phase>``: the process kills itself
(SIGKILL) at that named point (:func:`platformdb.journal.crash_point`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest

import redis
from platformdb import embedded, journal
from platformdb.clickhouse import connect as ch_connect
from platformdb.clickhouse import rows
from platformdb.ops import backup as backups
from platformdb.ops import health, migrations
from platformdb.types import Endpoints
from tests.clickhouse.conftest import add_dictionary_views
from tests.conftest import drop_database, embedded_admin_url, fresh_name, migrated_database

REPO = Path(__file__).resolve().parents[2]

SET_PHASES = [
    "staging:postgresql", "started:pg_restore", "staged:postgresql",
    "staging:clickhouse", "staged:clickhouse", "staging:redis", "staged:redis",
    "switching", "switching:postgresql", "postgresql:closed", "postgresql:renamed-aside",
    "switched:postgresql", "switching:clickhouse", "clickhouse:switching",
    "clickhouse:first-table-in", "switched:clickhouse", "switching:redis", "redis:switching",
    "switched:redis", "committing", "committed:postgresql", "committed:clickhouse",
]
"""Every crash point of `restore all`, in the order it passes them (the last commit's is
the end: nothing is left to do)."""
FORWARD = SET_PHASES.index("switching")

SINGLE_PHASES = {
    "postgresql": [("started:pg_restore", "old"), ("postgresql:renamed-aside", "new"),
                   ("committing", "new")],
    "clickhouse": [("staged:clickhouse", "old"), ("clickhouse:first-table-in", "new")],
    "redis": [("redis:switching", "new"), ("switched:redis", "new")],
}
"""A single-store restore's crash points (the same machinery as `restore all`'s, so a few:
a kill mid-stage, mid-switch, before the commit) and what the store then holds."""


@dataclass
class Stack:
    endpoints: Endpoints
    admin: str
    env: dict[str, str]

    @property
    def pg(self) -> str:
        assert self.endpoints.postgres is not None
        return self.endpoints.postgres

    def cli(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if crash_at:
            env[journal.CRASH_VARIABLE] = crash_at
        return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=300)


@dataclass
class Backups:
    every: Path
    """A set of the stores saying ``new``."""
    parts: dict[str, Path]
    """Each store's own backup, saying ``new``."""
    views: str


@pytest.fixture(scope="module")
def stack(stack_home: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A platform of its own (PostgreSQL database, chDB path, Redis server), migrated,
    shared by this module's tests (each puts it back to ``old`` first)."""
    work = stack_home / "test-clusters" / uuid.uuid4().hex[:12]
    server = embedded.EmbeddedRedis(work / "redis")
    server.start()
    name = fresh_name("journal")
    pg_admin_url = embedded_admin_url(stack_home)  # kill points: the platform's own journal
    url = migrated_database(pg_admin_url, name)    # and switches, one server is enough
    try:
        add_dictionary_views(url)
        home = tmp_path_factory.mktemp("journal") / "home"
        home.mkdir()
        found = Endpoints(postgres=url, clickhouse=f"chdb://{home.parent / 'ch'}",
                          redis=server.url(), home=home)
        migrations.up(found, ["clickhouse"])
        base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
        base.update(PLATFORMDB_POSTGRES_URL=url, PLATFORMDB_CLICKHOUSE_URL=found.clickhouse or "",
                    PLATFORMDB_REDIS_URL=server.url(), PLATFORMDB_HOME=str(home))
        yield Stack(found, pg_admin_url, base)
        backups.recover(found, cleanup=True)  # a failed test's scratch copies go too
    finally:
        drop_database(pg_admin_url, name)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def taken(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Backups:
    out = tmp_path_factory.mktemp("backups")
    mark(stack, "new")
    views = marks(stack)["clickhouse views"]
    (folder,) = backups.backup(stack.endpoints, None, out)
    parts = {store: backups.backup(stack.endpoints, [store], out)[0]
             for store in ("postgresql", "clickhouse", "redis")}
    return Backups(folder, parts, views)


def mark(stack: Stack, value: str) -> None:
    """Make every store say ``value`` (and only it)."""
    with psycopg.connect(stack.pg) as conn:
        conn.execute("DELETE FROM organizations WHERE slug IN ('old', 'new')")
        conn.execute("INSERT INTO organizations (name, slug) VALUES (%s, %s)", (value, value))
    with ch_connect(stack.endpoints.clickhouse or "") as client:
        client.command("TRUNCATE TABLE user_events")
        client.command("INSERT INTO user_events (timestamp, org_id, user_id, session_id, "
                       "event_type) VALUES (now(), generateUUIDv4(), generateUUIDv4(), "
                       f"'{value}', 'mark')")
    client_ = redis.Redis.from_url(stack.endpoints.redis or "")
    client_.set("mark", value)
    client_.close()


def marks(stack: Stack) -> dict[str, str]:
    """What each store says; ``missing`` when it is not there at all."""
    found: dict[str, str] = {}
    try:
        with psycopg.connect(stack.pg) as conn:
            slugs = [r[0] for r in conn.execute(
                "SELECT slug FROM organizations WHERE slug IN ('old', 'new')")]
        found["postgresql"] = ",".join(slugs)
    except psycopg.OperationalError:  # the name resolves, closed to connections, or not
        with psycopg.connect(stack.admin, autocommit=True) as conn:
            there = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (stack.pg.rsplit("/", 1)[1],)).fetchone()
        found["postgresql"] = "closed" if there else "missing"
    with ch_connect(stack.endpoints.clickhouse or "") as client:
        tables = {str(n): str(e) for n, e in rows(
            client, "SELECT name, engine FROM system.tables WHERE database = 'platform'")}
        values = ([str(r[0]) for r in rows(client, "SELECT session_id FROM user_events")]
                  if "user_events" in tables else ["missing"])
        views = sum(engine == "MaterializedView" for engine in tables.values())
        dictionaries = sum(engine == "Dictionary" for engine in tables.values())
    found["clickhouse"] = ",".join(values)
    found["clickhouse views"] = f"{views} views, {dictionaries} dictionaries"
    client_ = redis.Redis.from_url(stack.endpoints.redis or "")
    found["redis"] = (client_.get("mark") or b"missing").decode()
    client_.close()
    return found


def every(value: str, views: str) -> dict[str, str]:
    return {"postgresql": value, "clickhouse": value, "clickhouse views": views, "redis": value}


def orphans(stack: Stack) -> list[str]:
    """pg_restore processes still writing into a scratch copy of the stack's database."""
    scratch = f"{stack.pg.rsplit('/', 1)[1][:40]}_restore_"
    deadline = time.monotonic() + 5
    while True:
        found = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
                 if scratch in " ".join(p.info["cmdline"] or [])]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def nothing_left(stack: Stack) -> None:
    assert journal.journals(stack.endpoints.home) == []
    assert backups.leftovers(stack.endpoints) == {}
    assert health.leftover_rows(stack.endpoints) == []


@pytest.mark.slow
@pytest.mark.parametrize("phase", SET_PHASES)
def test_restore_all_killed_at_any_phase_is_finished_or_rolled_back(
        stack: Stack, taken: Backups, phase: str) -> None:
    mark(stack, "old")
    killed = stack.cli("restore", "all", str(taken.every), "--force", crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    assert "missing" not in marks(stack).values(), f"a store is missing after a kill at {phase}"
    assert backups.leftovers(stack.endpoints).get("journal"), "the journal is gone"
    if phase == "switching:clickhouse":  # once through the command itself
        recovered = stack.cli("recover")
        assert recovered.returncode == 0, recovered.stderr
        assert "finished" in recovered.stdout
    else:
        backups.recover(stack.endpoints)
    expected = "new" if SET_PHASES.index(phase) >= FORWARD else "old"
    assert marks(stack) == every(expected, taken.views)
    nothing_left(stack)


@pytest.mark.slow
@pytest.mark.parametrize(("store", "phase", "expected"), [
    (store, phase, expected) for store, phases in SINGLE_PHASES.items()
    for phase, expected in phases])
def test_a_single_store_restore_killed_at_any_phase_is_finished_or_rolled_back(
        stack: Stack, taken: Backups, store: str, phase: str, expected: str) -> None:
    mark(stack, "old")
    killed = stack.cli("restore", store, str(taken.parts[store]), "--force", crash_at=phase)
    assert killed.returncode == -9, f"never reached {phase}: {killed.stderr}"
    assert "missing" not in marks(stack).values()
    if phase == "started:pg_restore":  # the child died with its parent
        assert orphans(stack) == [], "pg_restore runs on after its restore was killed"
    backups.recover(stack.endpoints)
    wanted = every("old", taken.views)
    wanted[store] = expected
    assert marks(stack) == wanted
    nothing_left(stack)


@pytest.mark.slow
def test_the_next_restore_recovers_a_killed_one_first(stack: Stack, taken: Backups) -> None:
    mark(stack, "old")
    killed = stack.cli("restore", "all", str(taken.every), "--force",
                       crash_at="staged:clickhouse")
    assert killed.returncode == -9
    again = stack.cli("restore", "redis", str(taken.parts["redis"]), "--force")
    assert again.returncode == 0, again.stderr
    wanted = every("new", taken.views)
    wanted["postgresql"] = wanted["clickhouse"] = "old"  # the killed one rolled back
    assert marks(stack) == wanted
    nothing_left(stack)


@pytest.mark.slow
def test_health_lists_leftovers_and_recover_cleanup_removes_them(stack: Stack,
                                                                 taken: Backups) -> None:
    stray = f"{stack.pg.rsplit('/', 1)[1][:40]}_restore_0badc0de"
    with psycopg.connect(stack.admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{stray}"')
    client = redis.Redis.from_url(stack.endpoints.redis or "")
    client.set(b"__platformdb_restore:{k}:00000000deadbeef:k", b"v")
    client.close()
    rows_ = health.leftover_rows(stack.endpoints)
    assert rows_ and not rows_[0].healthy
    assert any(stray in problem for problem in rows_[0].problems)
    assert any("deadbeef" in problem for problem in rows_[0].problems)
    done = backups.recover(stack.endpoints, cleanup=True)
    assert stray in done.removed["postgresql"]
    nothing_left(stack)

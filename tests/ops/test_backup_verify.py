"""`platformdb backup verify`: the restore drill restores a set into scratch targets only,
checks it there, drops the scratch copies and records its outcome and duration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import redis
from platformdb import embedded, journal
from platformdb.backup import state
from platformdb.backup.manifest import MANIFEST
from platformdb.clickhouse import command, rows
from platformdb.clickhouse import connect as ch_connect
from platformdb.errors import CheckFailed
from platformdb.ops import backup as backups
from platformdb.ops import drill, migrations
from platformdb.ops.domain_metrics import backup_metrics
from platformdb.types import Endpoints
from tests.clickhouse.conftest import add_dictionary_views
from tests.conftest import create_database, drop_database, fresh_name

REPO = Path(__file__).resolve().parents[2]
ORG = "11111111-1111-1111-1111-111111111111"


@dataclass
class Stack:
    endpoints: Endpoints
    admin: str
    env: dict[str, str]

    @property
    def pg(self) -> str:
        assert self.endpoints.postgres is not None
        return self.endpoints.postgres

    @property
    def redis(self) -> redis.Redis:
        assert self.endpoints.redis is not None
        return redis.Redis.from_url(self.endpoints.redis)


@pytest.fixture(scope="module")
def stack(pg_admin_url: str, migrated_template: str, stack_home: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A live platform of its own (PostgreSQL database, chDB path, Redis server), migrated,
    holding an org, campaign metrics rolled up in ClickHouse and a queue with its jobs."""
    work = stack_home / "test-clusters" / uuid.uuid4().hex[:12]
    server = embedded.EmbeddedRedis(work / "redis")
    server.start()
    name = fresh_name("drill")
    url = create_database(pg_admin_url, name, template=migrated_template)
    try:
        add_dictionary_views(url)
        home = tmp_path_factory.mktemp("drill") / "home"
        home.mkdir()
        found = Endpoints(postgres=url, clickhouse=f"chdb://{home.parent / 'ch'}",
                          redis=server.url(), home=home)
        migrations.up(found, ["clickhouse"])
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO organizations (name, slug) VALUES ('Drill', 'drill')")
        with ch_connect(found.clickhouse or "") as client:
            command(client, "INSERT INTO campaign_metrics_raw (timestamp, org_id, campaign_id,"
                            " dsp_type, impressions, clicks, conversions, spend, revenue)"
                            f" SELECT now() - number * 600, '{ORG}', '{ORG}', 'dv360',"
                            " 10 + number, 1, 0, 1.5, 2.5 FROM numbers(30)")
        live = redis.Redis.from_url(server.url())
        live.set("cache:{drill}:k", "v")
        for job in ("j1", "j2", "j3"):
            live.hset(f"queue:{{etl}}:job:{ORG}:{job}", mapping={"id": job, "org_id": ORG})
        live.lpush("queue:{etl}", f"{ORG}:j1")
        live.rpush("queue:{etl}:processing", f"{ORG}:j2")
        live.zadd("queue:{etl}:delayed", {f"{ORG}:j3": 1})
        live.close()
        base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
        base.update(PLATFORMDB_POSTGRES_URL=url, PLATFORMDB_CLICKHOUSE_URL=found.clickhouse or "",
                    PLATFORMDB_REDIS_URL=server.url(), PLATFORMDB_HOME=str(home))
        yield Stack(found, pg_admin_url, base)
        backups.recover(found, cleanup=True)  # a failed test's scratch copies go too
    finally:
        drop_database(pg_admin_url, name)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def live_state(stack: Stack) -> dict[str, Any]:
    """Everything the drill must leave as it was: every database, table, row and key."""
    with psycopg.connect(stack.admin) as conn:
        databases = sorted(r[0] for r in conn.execute("SELECT datname FROM pg_database"))
    with psycopg.connect(stack.pg) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace ="
            " 'public'::regnamespace ORDER BY 1")]
        contents = {table: conn.execute(f'SELECT md5(string_agg(t::text, \',\' ORDER BY t::text))'
                                        f' FROM public."{table}" t').fetchone()
                    for table in tables}
    with ch_connect(stack.endpoints.clickhouse or "") as client:
        ch = rows(client, "SELECT database, name, engine, total_rows FROM system.tables"
                          " WHERE database NOT IN ('system', 'INFORMATION_SCHEMA',"
                          " 'information_schema') ORDER BY 1, 2")
        ch_databases = rows(client, "SELECT name FROM system.databases ORDER BY 1")
    live = stack.redis
    keys = {key: (live.dump(key), live.pttl(key)) for key in sorted(live.keys("*"))}
    live.close()
    return {"pg databases": databases, "pg": contents, "ch": ch, "ch databases": ch_databases,
            "redis": keys}


def nothing_left(stack: Stack) -> None:
    assert backups.leftovers(stack.endpoints) == {}
    assert not journal.unfinished(stack.endpoints.home)


@pytest.mark.slow
def test_the_drill_of_a_good_set_passes_records_its_duration_and_touches_nothing_live(
        stack: Stack, tmp_path: Path) -> None:
    (folder,) = backups.backup(stack.endpoints, None, tmp_path)
    before = live_state(stack)
    drilled = drill.verify_set(stack.endpoints, tmp_path)  # the newest set in the folder
    assert drilled.ok, drilled.reason
    assert drilled.set == folder.name and drilled.seconds > 0
    assert set(drilled.stores) == {"postgresql", "clickhouse", "redis"}
    assert live_state(stack) == before
    nothing_left(stack)
    recorded = state.last_verified(tmp_path)
    assert recorded is not None and recorded.ok and recorded.set == folder.name
    assert recorded.seconds == drilled.seconds
    assert 0 < recorded.restore_seconds == drilled.restore_seconds <= drilled.seconds
    metrics = {m.name: m.value for m in backup_metrics(tmp_path)}
    assert metrics["last_verified_timestamp_seconds"] == recorded.finished_at.timestamp()
    assert metrics["verify_duration_seconds"] == drilled.seconds


@pytest.mark.slow
def test_a_set_with_a_corrupted_part_fails_with_one_line_and_is_not_recorded_as_verified(
        stack: Stack, tmp_path: Path) -> None:
    (folder,) = backups.backup(stack.endpoints, None, tmp_path)
    part = next(folder.glob("clickhouse-*"))
    data = sorted((part / "data").iterdir(), key=lambda p: -p.stat().st_size)[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    before = live_state(stack)
    drilled = drill.verify_set(stack.endpoints, folder)
    assert not drilled.ok
    assert "\n" not in drilled.reason and data.name in drilled.reason
    assert live_state(stack) == before
    nothing_left(stack)
    assert state.last_verified(tmp_path) is None
    last = state.last_verification(tmp_path)
    assert last is not None and not last.ok and last.reason == drilled.reason
    metrics = {m.name: m.value for m in backup_metrics(tmp_path)}
    assert metrics["last_verified_timestamp_seconds"] == 0.0  # the stale alert fires
    assert "verify_duration_seconds" not in metrics


@pytest.mark.slow
def test_backup_all_verify_records_the_set_as_good_only_when_the_drill_passes(
        stack: Stack, tmp_path: Path) -> None:
    good = tmp_path / "good"
    (folder,) = backups.backup(stack.endpoints, None, good, check=drill.required)
    assert {g.folder.split("/")[0] for g in state.last_good(good).values()} == {folder.name}
    assert state.last_verified(good) is not None
    live = stack.redis
    member = f"{ORG}:orphan"
    live.lpush("queue:{etl}", member)  # a member without its job hash: a broken invariant
    try:
        bad = tmp_path / "bad"
        with pytest.raises(CheckFailed, match="without its job hash") as failed:
            backups.backup(stack.endpoints, None, bad, check=drill.required)
        assert "\n" not in str(failed.value)
    finally:
        live.lrem("queue:{etl}", 0, member)
        live.close()
    assert state.last_good(bad) == {}
    assert state.last_verified(bad) is None
    nothing_left(stack)


def test_queue_invariants_name_each_broken_one() -> None:
    def entry(key: str, kind: str, value: Any) -> dict[str, Any]:
        import base64

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        encoded = ([b64(v) for v in value] if kind == "list" else
                   [[b64(m), s] for m, s in value] if kind == "zset" else
                   {b64(f): b64(v) for f, v in value.items()})
        return {"key": b64(key), "type": kind, "value": encoded}

    job = {"id": "x"}
    entries = [entry("queue:{q}", "list", ["o:a", "o:b"]),
               entry("queue:{q}:dead", "list", ["o:a"]),
               entry("queue:{q}:job:o:a", "hash", job),
               entry("queue:{q}:job:o:c", "hash", job),
               entry("queue:{q}:delayed", "zset", [("o:d", 1.0)]),
               entry("queue:{q}:job:o:d", "hash", job)]
    problems = drill.queue_problems(entries)
    assert problems == ["queue:{q} holds o:b without its job hash",
                        "job queue:{q}:job:o:a is in 2 queue structures (expected exactly one)",
                        "job queue:{q}:job:o:c is in 0 queue structures (expected exactly one)"]


@pytest.mark.slow
def test_a_drill_killed_midway_leaves_what_recover_drops_and_the_cli_reports_json(
        stack: Stack, tmp_path: Path) -> None:
    backups.backup(stack.endpoints, None, tmp_path)
    before = live_state(stack)
    env = {**stack.env, journal.CRASH_VARIABLE: "verify:staged:clickhouse"}
    killed = subprocess.run([sys.executable, "-m", "platformdb.cli", "backup", "verify",
                             str(tmp_path)], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert journal.unfinished(stack.endpoints.home)  # the scratch copies are named there
    backups.recover(stack.endpoints)
    nothing_left(stack)
    assert live_state(stack) == before
    done = subprocess.run([sys.executable, "-m", "platformdb.cli", "backup", "verify",
                           "--out", str(tmp_path), "--json"], env=stack.env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and reply["seconds"] > 0
    assert (tmp_path / reply["set"] / MANIFEST).is_file()
    nothing_left(stack)

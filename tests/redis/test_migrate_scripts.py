"""``platformdb migrate`` loads the Lua scripts and keeps a versioned ledger of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.client import Redis
from redis.cluster import RedisCluster

from platformdb.stores import RedisStore
from platformdb.migrate import redis as redis_migrate
from platformdb.redis import connect, registry
from tests.redis.valkey_cluster import Cluster
from tests.test_cli import assert_one_line_error, cli

SCRIPTS = {script.name for script in registry()}


@pytest.fixture
def fresh(redis_client: Redis) -> Iterator[Redis]:
    """The target server with no ledger and no scripts loaded."""
    redis_client.delete(redis_migrate.LEDGER)
    redis_client.script_flush()
    yield redis_client
    redis_client.delete(redis_migrate.LEDGER)


def states(client: Redis | RedisCluster) -> dict[str, str]:
    return {row.name: row.state for row in redis_migrate.status(client)}


def test_up_loads_every_script_once_and_records_its_version(fresh: Redis) -> None:
    assert set(states(fresh).values()) == {"pending"}
    assert [s.label for s in redis_migrate.up(fresh, dry_run=True)] and not fresh.exists(
        redis_migrate.LEDGER)
    steps = redis_migrate.up(fresh)
    assert {s.label.split()[1] for s in steps} == SCRIPTS
    assert set(states(fresh).values()) == {"loaded"}
    assert all(fresh.script_exists(*[s.sha for s in registry()]))
    entry = json.loads(fresh.hget(redis_migrate.LEDGER, "ratelimit_allow") or "{}")
    assert entry["version"] == registry()["ratelimit_allow"].version
    assert entry["sha"] == registry()["ratelimit_allow"].sha and entry["loaded_by"]
    assert redis_migrate.up(fresh) == []  # nothing left to do


def test_a_flushed_server_and_a_changed_script_are_reported_and_reloaded(fresh: Redis) -> None:
    redis_migrate.up(fresh)
    fresh.script_flush()  # what a restart does
    assert set(states(fresh).values()) == {"not on server"}
    assert redis_migrate.verify(fresh) == []  # calls would reload transparently
    assert len(redis_migrate.up(fresh)) == len(SCRIPTS)

    old = {"version": "0", "sha": "0" * 40, "loaded_at": "2026-01-01T00:00:00+00:00",
           "loaded_by": "someone"}
    fresh.hset(redis_migrate.LEDGER, "session_touch", json.dumps(old))
    assert states(fresh)["session_touch"] == "changed"
    problems = redis_migrate.verify(fresh)
    assert len(problems) == 1 and "session_touch" in problems[0]
    assert [s.label for s in redis_migrate.up(fresh)] == [
        f"script session_touch v{registry()['session_touch'].version} (changed)"]
    assert redis_migrate.verify(fresh) == []


def test_cli_migrate_up_and_status_cover_redis(fresh: Redis, redis_url: str) -> None:
    env = {"PLATFORMDB_REDIS_URL": redis_url}
    up = cli("migrate", "up", "--store", "redis", env=env)
    assert up.returncode == 0, up.stderr
    assert up.stdout.count("redis: applied script") == len(SCRIPTS)
    status = cli("migrate", "status", "--store", "redis", "--json", env=env)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["redis"]
    assert {r["name"] for r in rows} == SCRIPTS and {r["state"] for r in rows} == {"loaded"}
    assert "nothing to do" in cli("migrate", "up", "--store", "redis", env=env).stdout
    assert_one_line_error(cli("migrate", "down", "--store", "redis", env=env), 2,
                          "redis has no numbered migrations")


def test_up_loads_the_scripts_on_every_primary_of_a_cluster(redis_cluster: Cluster) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        client.script_flush()
        client.delete(redis_migrate.LEDGER)
        assert len(redis_migrate.up(client)) == len(SCRIPTS)
        assert set(states(client).values()) == {"loaded"}
        for primary in client.get_primaries():
            node = Redis(host=primary.host, port=primary.port)
            assert all(node.script_exists(*[s.sha for s in registry()]))
            node.close()
    finally:
        client.close()


def test_health_reports_scripts_not_loaded_and_fails_on_a_changed_one(
        fresh: Redis, redis_url: str, tmp_path: Path) -> None:
    store = RedisStore(redis_url)
    before = store.health()
    assert before.healthy and "not loaded yet" in before.detail
    assert len(before.pending_migrations) == len(SCRIPTS)
    redis_migrate.up(fresh)
    assert store.health().detail == "ok"
    fresh.hset(redis_migrate.LEDGER, "cache_get", json.dumps({"version": "0", "sha": "x"}))
    after = store.health()
    assert not after.healthy and "cache_get" in after.detail

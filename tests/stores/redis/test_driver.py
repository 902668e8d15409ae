"""The Redis driver of the migration engine: the functions library as a repeatable migration."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from redis.client import Redis
from redis.cluster import RedisCluster

from platformdb.errors import MigrationError
from platformdb.migrate import Migrator
from platformdb.redis import connect, functions, library
from platformdb.redis.functions import read_library, scripts_dir
from platformdb.stores import RedisStore
from platformdb.stores.redis import driver as redis_migrate
from platformdb.stores.redis.driver import LEDGER, RedisDriver, migrations
from tests.redis.valkey_cluster import Cluster
from tests.test_cli import assert_one_line_error, cli


def migrator(client: Redis | RedisCluster, lib: functions.Library | None = None) -> Migrator:
    return Migrator(RedisDriver(client=client), migrations(lib))


def states(client: Redis | RedisCluster) -> list[str]:
    return [row.state for row in migrator(client).status()]


def other_library(tmp_path: Path, version: int) -> functions.Library:
    folder = tmp_path / f"v{version}"
    shutil.copytree(scripts_dir(), folder)
    preamble = folder / "library.lua"
    preamble.write_text(preamble.read_text().replace(
        f"-- version: {library().version}\n", f"-- version: {version}\n"))
    return read_library(folder)


def test_the_library_is_one_repeatable_migration() -> None:
    [migration] = migrations()
    assert migration.repeatable and migration.version == 1
    assert migration.name == f"platformdb_functions_v{library().version}"
    assert migration.sql == library().code and migration.down_path is None


def test_up_loads_the_library_and_records_what_when_and_who(scratch: Redis) -> None:
    assert states(scratch) == ["pending"]
    assert [s.duration_ms for s in migrator(scratch).up(dry_run=True)] == [None]
    assert functions.on_server(scratch)[0].checksum is None  # a dry run changes nothing
    [step] = migrator(scratch).up()
    assert (step.store, step.direction, step.label) == ("redis", "up", migrations()[0].label)
    assert states(scratch) == ["applied"]
    assert functions.on_server(scratch)[0].checksum == library().checksum
    entry = scratch.hgetall(LEDGER)
    assert entry["checksum"] == migrations()[0].checksum
    assert entry["library_checksum"] == library().checksum
    assert entry["name"] == migrations()[0].name and "@" in entry["applied_by"]
    assert entry["applied_at"].startswith("20")
    assert migrator(scratch).up() == []  # nothing left to do
    assert migrator(scratch).verify() == []


def test_a_changed_library_and_a_lost_one_are_reported_and_loaded_again(
    scratch: Redis, tmp_path: Path
) -> None:
    migrator(scratch, other_library(tmp_path, 0)).up()  # what an older checkout loaded
    [row] = migrator(scratch).status()
    assert row.state == "changed" and row.applied_by
    assert migrator(scratch).verify() == []  # not drift to refuse: `up` replaces it
    assert len(migrator(scratch).up()) == 1
    assert states(scratch) == ["applied"]

    scratch.function_flush()  # a failover to a fresh node, or FUNCTION FLUSH
    assert states(scratch) == ["not on server"]
    assert len(migrator(scratch).up()) == 1
    assert states(scratch) == ["applied"]


def test_there_is_no_down_for_the_library(scratch: Redis) -> None:
    migrator(scratch).up()
    with pytest.raises(MigrationError, match="replaced, never rolled back"):
        migrator(scratch).down()


def test_one_runner_at_a_time(scratch: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_migrate, "LOCK_WAIT", 0.3)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with RedisDriver(client=scratch).lock():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(5)
        with pytest.raises(MigrationError, match="another runner holds the Redis migration lock"):
            migrator(scratch).up()
    finally:
        release.set()
        thread.join()
    assert scratch.exists(redis_migrate.LOCK) == 0  # released by its holder
    assert len(migrator(scratch).up()) == 1


@pytest.mark.slow
def test_cli_migrate_up_status_and_verify_treat_redis_like_the_other_stores(
    scratch_url: str, scratch: Redis
) -> None:
    env = {"PLATFORMDB_REDIS_URL": scratch_url}
    up = cli("migrate", "up", "--store", "redis", env=env)
    assert up.returncode == 0, up.stderr
    assert f"redis: applied {migrations()[0].label}" in up.stdout
    status = cli("migrate", "status", "--store", "redis", "--json", env=env)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)["redis"]
    assert (row["name"], row["state"]) == (migrations()[0].name, "applied")
    assert "nothing to do" in cli("migrate", "up", "--store", "redis", "--to", "7", env=env).stdout
    verify = cli("migrate", "verify", "--store", "redis", env=env)
    assert verify.returncode == 0, verify.stderr
    assert_one_line_error(cli("migrate", "down", "--store", "redis", env=env), 2,
                          "redis has no numbered migrations")


def test_health_fails_until_the_library_is_loaded(
    scratch_url: str, scratch: Redis, tmp_path: Path
) -> None:
    store = RedisStore(scratch_url)
    before = store.health()
    assert not before.healthy and "(pending)" in before.detail
    migrator(scratch).up()
    after = store.health()
    assert after.healthy and after.detail == "ok"


@pytest.mark.slow
def test_up_loads_the_library_on_every_primary_of_a_cluster(redis_cluster: Cluster) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        client.function_flush()  # FUNCTION FLUSH goes to every primary
        client.delete(LEDGER)
        assert states(client) == ["pending"]
        assert len(migrator(client).up()) == 1
        assert states(client) == ["applied"]
        for primary in client.get_primaries():
            node = Redis(host=primary.host, port=primary.port)
            assert node.function_list(library="platformdb")
            node.close()
        primary = client.get_primaries()[0]
        node = Redis(host=primary.host, port=primary.port)
        node.function_flush()  # a new shard, or a failover to a fresh node
        node.close()
        assert states(client) == ["not on server"]
        assert len(migrator(client).up()) == 1
        assert states(client) == ["applied"]
    finally:
        client.close()

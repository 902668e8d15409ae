"""`backup all` writes one set; `restore all` restores every store or none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import redis
from platformdb import embedded
from platformdb.backup.manifest import MANIFEST
from platformdb.errors import PlatformDBError, StoreUnavailable, ValidationError
from platformdb.ops import backup as stores
from platformdb.ops import migrations
from platformdb.stores import open_store
from platformdb.types import Endpoints
from tests.clickhouse.conftest import add_dictionary_views
from tests.conftest import drop_database, fresh_name, with_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_pair(cluster_dir: Path) -> Iterator[tuple[str, str]]:
    """Two Redis servers of this test's own: a source and a restore target."""
    servers = [embedded.EmbeddedRedis(cluster_dir / name) for name in ("source", "target")]
    for server in servers:
        server.start()
    try:
        yield servers[0].url(), servers[1].url()
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def source(migrated_url: str, redis_pair: tuple[str, str], tmp_path: Path) -> Endpoints:
    add_dictionary_views(migrated_url)  # until the PostgreSQL migration creates them
    found = Endpoints(postgres=migrated_url, clickhouse=f"chdb://{tmp_path / 'source-ch'}",
                      redis=redis_pair[0], home=tmp_path)
    migrations.up(found, ["clickhouse"])
    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES ('Set Org', 'set-org')")
    client = redis.Redis.from_url(redis_pair[0])
    client.set("cache:{set}:k", "v")
    client.rpush("queue:{set}", "a", "b")
    client.close()
    return found


@pytest.fixture
def target(pg_admin_url: str, redis_pair: tuple[str, str], tmp_path: Path) -> Iterator[Endpoints]:
    name = fresh_name("settarget")
    yield Endpoints(postgres=with_database(pg_admin_url, name),
                    clickhouse=f"chdb://{tmp_path / 'target-ch'}", redis=redis_pair[1],
                    home=tmp_path)
    drop_database(pg_admin_url, name)


def organizations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT slug FROM organizations ORDER BY slug")]


def database_exists(admin: str, url: str) -> bool:
    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (url.rsplit("/", 1)[1],)).fetchone() is not None


@pytest.mark.slow
def test_backup_all_writes_one_set_naming_each_part_and_its_point(source: Endpoints,
                                                                  tmp_path: Path) -> None:
    (folder,) = stores.backup(source, None, tmp_path / "backups")
    assert folder.name.startswith("set-")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["parts"]) == {"postgresql", "clickhouse", "redis"}
    point = manifest["parts"]["postgresql"]["point"]
    assert point["lsn"] and point["snapshot"] and point["taken_at"]
    for part in manifest["parts"].values():
        assert (folder / part["folder"] / MANIFEST).is_file()


@pytest.mark.slow
def test_restore_all_changes_nothing_when_one_store_fails_then_restores_every_store(
        source: Endpoints, target: Endpoints, pg_admin_url: str, tmp_path: Path) -> None:
    (folder,) = stores.backup(source, None, tmp_path / "backups")
    assert target.redis is not None and target.postgres is not None
    blocker = redis.Redis.from_url(target.redis)
    blocker.set("already:here", "1")  # a non-empty Redis target refuses without --force
    with pytest.raises(PlatformDBError, match="holds keys") as refused:
        stores.restore(target, None, tmp_path / "backups")
    assert refused.value.hint is not None and refused.value.hint.flag == "--force"
    assert not database_exists(pg_admin_url, target.postgres), "PostgreSQL was left restored"
    assert blocker.keys("*") == [b"already:here"]
    blocker.delete("already:here")
    blocker.close()
    results = stores.restore(target, None, folder, verify=True)
    assert {r.store for r in results} == {"postgresql", "clickhouse", "redis"}
    assert all(r.mismatches == [] for r in results)
    assert organizations(target.postgres) == organizations(source.postgres or "")
    restored = redis.Redis.from_url(target.redis)
    assert restored.lrange("queue:{set}", 0, -1) == [b"a", b"b"]
    restored.close()


@pytest.mark.slow
def test_a_forced_restore_keeps_the_old_database_until_every_store_is_in(
        source: Endpoints, migrated_url: str, tmp_path: Path) -> None:
    (folder,) = stores.backup(source, ["postgresql"], tmp_path / "backups")
    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES ('Later', 'later')")
    before = organizations(migrated_url)
    staged = open_store("postgresql", source).stage(folder, force=True, verify=True)
    assert organizations(migrated_url) == before, "staging touched the target"
    staged.switch()
    assert "later" not in organizations(migrated_url)
    staged.undo()
    assert organizations(migrated_url) == before


@pytest.mark.slow
def test_restore_all_refuses_loose_backups_taken_apart(source: Endpoints,
                                                      tmp_path: Path) -> None:
    stores.backup(source, ["postgresql"], tmp_path / "loose")
    stores.backup(source, ["redis"], tmp_path / "loose")
    with pytest.raises(ValidationError, match=r"no backup set found .* one store at a time"):
        stores.restore(source, None, tmp_path / "loose")


@pytest.mark.slow
def test_a_failed_backup_leaves_no_folder_behind(source: Endpoints, tmp_path: Path) -> None:
    broken = Endpoints(postgres=source.postgres, clickhouse=source.clickhouse,
                       redis="redis://127.0.0.1:1/0")
    with pytest.raises((StoreUnavailable, PlatformDBError)):
        stores.backup(broken, None, tmp_path / "backups")
    with pytest.raises((StoreUnavailable, PlatformDBError)):
        stores.backup(broken, ["redis"], tmp_path / "backups")
    assert list((tmp_path / "backups").iterdir()) == []


@pytest.mark.slow
def test_out_naming_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    result = subprocess.run([sys.executable, "-m", "platformdb.cli", "backup", "postgresql",
                             "--out", str(tmp_path / "file")], env=base, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "is a file" in result.stderr


class Reported:
    """A progress front end that keeps each task's description, unit and last amount."""

    def __init__(self) -> None:
        from platformdb.progress import Progress, Task

        outer = self
        self.tasks: list[Task] = []

        class Front(Progress):
            def opened(self, task: Task) -> None:
                outer.tasks.append(task)

        self.front = Front()

    def described(self) -> list[str]:
        return [task.description for task in self.tasks]


@pytest.mark.slow
def test_backup_and_restore_report_each_store_and_stage(source: Endpoints, target: Endpoints,
                                                        tmp_path: Path) -> None:
    from platformdb.ops.context import Context

    made = Reported()
    (folder,) = stores.backup(Context(source, progress=made.front), None, tmp_path / "b")
    per_store = {task.description: task for task in made.tasks}
    assert made.described()[0] == "backup all"
    for store in ("postgresql", "clickhouse", "redis"):
        task = per_store[f"backup {store}"]
        assert task.unit == "bytes" and task.completed > 0 and task.ended is not None
    assert per_store["backup all"].completed == 3
    restored = Reported()
    stores.restore(Context(target, progress=restored.front), None, folder)
    assert restored.described()[:3] == ["restore all", f"restore: checking {folder.name}",
                                        "restore postgresql: staging beside the target"]
    order = restored.described()
    for store in ("postgresql", "clickhouse", "redis"):
        stage = order.index(f"restore {store}: staging beside the target")
        switch = order.index(f"restore {store}: switching in")
        assert stage < switch < order.index(f"restore {store}: dropping the previous contents")
    assert all(task.ended is not None and not task.failed for task in restored.tasks)
    assert restored.tasks[0].completed == 6  # three stores staged, three switched in

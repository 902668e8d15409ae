"""Erasure is complete: copies of an org's data in the platform's own scratch places (a
leftover tenant-import staging database in ClickHouse, a restore's staging key in Redis,
an unpacked archive's scratch folder under the home) are listed by `tenant show` and
removed by `tenant delete`; another org's rows and keys in the same copies stay."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from platformdb import journal
from platformdb.ops import tenant
from tests.ops.tenant.conftest import Deployment, add_org


def plant(dep: Deployment, home: Path, orgs: list[str]) -> tuple[str, list[str], list[Path]]:
    """A leftover ClickHouse staging database holding ``orgs``' raw rows, a Redis restore
    staging key and a scratch folder per org."""
    scratch = f"{dep.ch.database}_tenant_import_{uuid.uuid4().hex[:8]}"
    dep.ch.command(f"CREATE DATABASE `{scratch}`")
    dep.ch.command(f"CREATE TABLE `{scratch}`.campaign_metrics_raw AS campaign_metrics_raw")
    dep.ch.command(f"INSERT INTO `{scratch}`.campaign_metrics_raw SELECT * FROM"
                   " campaign_metrics_raw")
    redis = dep.redis()
    keys = [f"__platformdb_restore:{{x}}:{uuid.uuid4().hex[:6]}:{dep.prefix}session:{{{org}}}:u"
            for org in orgs]
    for key in keys:
        redis.set(key, "copy")
    redis.close()
    folders = []
    for org in orgs:
        folder = home / f".platformdb-tenant-{uuid.uuid4().hex[:8]}"
        (folder / "postgresql").mkdir(parents=True)
        (folder / "postgresql" / "users.csv").write_text(f"org_id,id\n{org},1\n")
        folders.append(folder)
    return scratch, keys, folders


@pytest.mark.slow
def test_delete_removes_the_org_from_scratch_copies_and_only_it(deployment: Deployment,
                                                                 tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dep = Deployment(deployment.endpoints.replace(home=home), deployment.prefix, deployment.ch)
    a = add_org(dep, "alpha", ch_rows=30)
    b = add_org(dep, "bravo", ch_rows=40)
    scratch, keys, folders = plant(dep, home, [a, b])
    try:
        shown = tenant.show_tenant(dep.endpoints, "alpha", redis_prefix=dep.prefix)
        assert shown.copies == {
            f"clickhouse:{scratch}.campaign_metrics_raw": 30,
            "redis:__platformdb_restore:*": 1, f"folder:{folders[0]}": 1}
        assert shown.as_dict()["scratch_copies"] == shown.copies
        other = tenant.show_tenant(dep.endpoints, "bravo", redis_prefix=dep.prefix).copies
        assert other[f"clickhouse:{scratch}.campaign_metrics_raw"] == 40

        tenant.delete_tenant(dep.endpoints, "alpha", yes=True, redis_prefix=dep.prefix)
        assert tenant.scratch_copies(dep.endpoints, uuid.UUID(a)) == {}
        assert not folders[0].exists()
        # bravo's rows, key and folder in the same places are untouched
        assert tenant.scratch_copies(dep.endpoints, uuid.UUID(b)) == other
        redis = dep.redis()
        assert redis.exists(keys[0]) == 0 and redis.get(keys[1]) in ("copy", b"copy")
        redis.close()
        assert (folders[1] / "postgresql" / "users.csv").is_file()
    finally:
        dep.ch.command(f"DROP DATABASE IF EXISTS `{scratch}` SYNC")
        redis = dep.redis()
        redis.delete(*keys)
        redis.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_failed_export_leaves_no_scratch_folder_and_no_journal(deployment: Deployment,
                                                                 tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    add_org(deployment, "alpha", ch_rows=10)
    broken = deployment.endpoints.replace(home=home, redis="redis://127.0.0.1:1/0")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception):  # noqa: B017 (whatever the unreachable Redis says)
        tenant.export_tenant(broken, "alpha", out / "alpha.tar", redis_prefix=deployment.prefix)
    assert sorted(out.iterdir()) == []
    assert journal.journals(home) == []

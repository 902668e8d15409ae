"""Backups round-trip; bad backups and non-empty targets are refused untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from platformdb.backup import find_backups
from platformdb.backup.manifest import MANIFEST
from platformdb.errors import CheckFailed, ValidationError
from platformdb.stores.postgres import backup as pg_backup
from tests.conftest import drop_database, fresh_name, with_database

TENANT_ROWS = 300


def fill(url: str) -> None:
    """Tenants, users and campaigns across partitions, as the owner."""
    from platformdb.binaries import pg_tool  # noqa: F401 - ensures tools resolve

    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, slug) SELECT md5('o' || n)::uuid, 'Org ' || n,"
            " 'org-' || n FROM generate_series(1, 5) n")
        conn.execute(
            "INSERT INTO campaigns (org_id, name, status, budget)"
            " SELECT md5('o' || (n %% 5 + 1))::uuid, 'Campaign ' || n, 'active', n"
            " FROM generate_series(1, %s) n", (TENANT_ROWS,))


@pytest.fixture
def target_url(pg_admin_url: str) -> Iterator[str]:
    name = fresh_name("restore")
    yield with_database(pg_admin_url, name)
    drop_database(pg_admin_url, name)


@pytest.mark.slow
def test_postgres_round_trip_matches_counts_and_checksums(migrated_url: str, target_url: str,
                                                          tmp_path: Path) -> None:
    fill(migrated_url)
    folder = pg_backup.backup(migrated_url, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["tables"]["campaigns"]["rows"] == TENANT_ROWS
    assert manifest["schema_version"] is not None and manifest["migrations"]
    report = pg_backup.restore(folder, target_url, verify=True)
    assert report.mismatches == []
    assert report.tables["campaigns"].rows == TENANT_ROWS
    assert report.tables == pg_backup.table_states(psycopg.connect(migrated_url))


@pytest.mark.slow
def test_writes_during_the_dump_are_in_neither_the_dump_nor_the_manifest(
        migrated_url: str, target_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fill(migrated_url)
    start = pg_backup.start_tool

    def write_then_dump(args: list[str]) -> Any:
        if "--snapshot" in args:  # the platform writes after the snapshot was exported
            with psycopg.connect(migrated_url, autocommit=True) as conn:
                conn.execute("INSERT INTO campaigns (org_id, name, status, budget)"
                             " VALUES (md5('o1')::uuid, 'Late', 'active', 1)")
        return start(args)

    monkeypatch.setattr(pg_backup, "start_tool", write_then_dump)
    folder = pg_backup.backup(migrated_url, tmp_path)
    assert json.loads((folder / MANIFEST).read_text())["tables"]["campaigns"]["rows"] == TENANT_ROWS
    report = pg_backup.restore(folder, target_url, verify=True)
    assert report.tables["campaigns"].rows == TENANT_ROWS
    source = pg_backup.table_states(psycopg.connect(migrated_url))
    assert source["campaigns"].rows == TENANT_ROWS + 1


@pytest.mark.slow
def test_directory_format_with_parallel_jobs_round_trips(migrated_url: str, target_url: str,
                                                         tmp_path: Path) -> None:
    fill(migrated_url)
    folder = pg_backup.backup(migrated_url, tmp_path, directory_format=True, jobs=2)
    assert (folder / "dump").is_dir()
    assert pg_backup.restore(folder, target_url, verify=True).mismatches == []


@pytest.mark.slow
def test_corrupted_or_truncated_backup_is_refused_before_the_target_is_touched(
        migrated_url: str, target_url: str, tmp_path: Path) -> None:
    fill(migrated_url)
    folder = pg_backup.backup(migrated_url, tmp_path)
    dump = folder / pg_backup.CUSTOM_FILE
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match="corrupted or truncated"):
        pg_backup.restore(folder, target_url)
    dump.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with pytest.raises(ValidationError, match="does not match its manifest"):
        pg_backup.restore(folder, target_url)
    admin = with_database(target_url, "postgres")
    with psycopg.connect(admin) as conn:
        name = target_url.rsplit("/", 1)[1]
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert found.fetchone() is None


@pytest.mark.slow
def test_restore_into_a_non_empty_target_needs_force(migrated_url: str, tmp_path: Path) -> None:
    fill(migrated_url)
    folder = pg_backup.backup(migrated_url, tmp_path)
    with psycopg.connect(migrated_url) as conn:
        conn.execute("DELETE FROM campaigns WHERE budget > 100")
    with pytest.raises(ValidationError, match="is not empty"):
        pg_backup.restore(folder, migrated_url)
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchone() == (100,)
    report = pg_backup.restore(folder, migrated_url, force=True, verify=True)
    assert report.tables["campaigns"].rows == TENANT_ROWS


@pytest.mark.slow
def test_verify_fails_when_restored_data_differs(migrated_url: str, target_url: str,
                                                 tmp_path: Path) -> None:
    fill(migrated_url)
    folder = pg_backup.backup(migrated_url, tmp_path)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["campaigns"]["rows"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckFailed, match="campaigns: expected 301 rows"):
        pg_backup.restore(folder, target_url, verify=True)


# The Redis backup tests live in test_backup_redis.py (private servers, stage/verify/switch).


def test_find_backups_picks_the_newest_folder_per_store(tmp_path: Path) -> None:
    for name in ("postgresql-20260101T000000Z", "postgresql-20260102T000000Z", "redis-20260101T0Z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MANIFEST).write_text("{}")
    found = find_backups(tmp_path)
    assert found["postgresql"].name == "postgresql-20260102T000000Z"
    assert set(found) == {"postgresql", "redis"}
    with pytest.raises(ValidationError, match="no backup found"):
        find_backups(tmp_path / "nothing")


@pytest.mark.slow
def test_a_restored_database_keeps_its_database_level_grants(migrated_url: str,
                                                             target_url: str,
                                                             tmp_path: Path) -> None:
    """pg_dump does not carry CONNECT/TEMPORARY grants; the manifest does, and restore applies
    them: PUBLIC must not regain CONNECT on a restored production database."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        name = migrated_url.rsplit("/", 1)[1]
        conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO platform_app')
    folder = pg_backup.backup(migrated_url, tmp_path)
    pg_backup.restore(folder, target_url, verify=True)
    with psycopg.connect(target_url) as conn:
        grants = conn.execute(pg_backup.DATABASE_ACL).fetchall()
    assert ("PUBLIC", "CONNECT") not in grants and ("PUBLIC", "TEMPORARY") not in grants
    assert ("platform_app", "CONNECT") in grants

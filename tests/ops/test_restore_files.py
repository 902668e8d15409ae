"""Spec-compatible restores: `restore postgresql backup.sql` (a pg_dump file) and
`restore clickhouse backup.tar` (`backup --archive`), staged, checked and switched all or
nothing like folder backups."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb.backup import archive
from platformdb.backup import state as backup_state
from platformdb.binaries import pg_tool
from platformdb.clickhouse import connect
from platformdb.config import Settings
from platformdb.errors import StoreUnavailable, ToolFailed, ValidationError
from platformdb.ops import backup as stores
from platformdb.stores.clickhouse import backup as ch_backup
from platformdb.types import Endpoints
from tests.conftest import clickhouse_url, drop_database, fresh_name, with_database
from tests.stores.clickhouse.test_backup import restore_any, settings_for

REPO = Path(__file__).resolve().parents[2]
ORG = uuid.UUID(int=0xBEEF)


def fill(url: str, name: str = "Acme") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)",
                     (uuid.uuid4(), name, f"s-{uuid.uuid4().hex[:8]}"))


def pg_dump(url: str, out: Path, *extra: str) -> Path:
    with open(out, "wb") as handle:
        subprocess.run([pg_tool("pg_dump", url), *extra, "-d", url], stdout=handle, check=True,
                       timeout=300)
    return out


def organizations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT name FROM organizations ORDER BY name")]


def scratch_databases(admin_url: str) -> list[str]:
    with psycopg.connect(admin_url) as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE '%\\_restore\\_%'"
            " OR datname LIKE '%\\_previous\\_%'")]


@pytest.fixture
def target_url(pg_admin_url: str) -> Iterator[str]:
    """A database name nobody uses yet (the restore creates it)."""
    name = fresh_name("dst")
    yield with_database(pg_admin_url, name)
    drop_database(pg_admin_url, name)


def restore_pg(url: str, path: Path, *, force: bool = False) -> list[object]:
    return list(stores.restore(Endpoints(postgres=url, clickhouse=None, redis=None),
                               ["postgresql"], path, force=force))


# ------------------------------------------------------------------ PostgreSQL dumps


@pytest.mark.parametrize("fmt", ["plain", "plain.gz", "custom", "tar"])
@pytest.mark.slow
def test_a_pg_dump_file_restores_into_a_new_database(fmt: str, migrated_url: str,
                                                     target_url: str, pg_admin_url: str,
                                                     tmp_path: Path) -> None:
    fill(migrated_url, "Acme")
    path = pg_dump(migrated_url, tmp_path / "backup-2026-01-06.sql",
                   *{"custom": ["-Fc"], "tar": ["-Ft"]}.get(fmt, []))
    if fmt == "plain.gz":
        gz = tmp_path / "backup-2026-01-06.sql.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    (result,) = restore_pg(target_url, path)
    assert organizations(target_url) == ["Acme"]
    assert result.tables["organizations"].rows == 1  # type: ignore[attr-defined]
    assert result.tables["permissions"].rows > 0  # type: ignore[attr-defined]
    assert scratch_databases(pg_admin_url) == []


@pytest.mark.slow
def test_a_dump_replaces_a_non_empty_target_only_when_forced(migrated_url: str,
                                                              pg_admin_url: str,
                                                              tmp_path: Path) -> None:
    fill(migrated_url, "From the dump")
    dump = pg_dump(migrated_url, tmp_path / "b.dump", "-Fc")
    other = with_database(pg_admin_url, fresh_name("dst"))
    restore_pg(other, dump)
    try:
        fill(other, "Written later")
        with pytest.raises(ValidationError, match="not empty"):
            restore_pg(other, dump)
        assert organizations(other) == ["From the dump", "Written later"]
        restore_pg(other, dump, force=True)
        assert organizations(other) == ["From the dump"]
        assert scratch_databases(pg_admin_url) == []
    finally:
        drop_database(pg_admin_url, urlsplit_db(other))


def urlsplit_db(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.mark.slow
def test_a_dump_that_fails_halfway_changes_nothing(migrated_url: str, pg_admin_url: str,
                                                   tmp_path: Path) -> None:
    fill(migrated_url, "Original")
    good = pg_dump(migrated_url, tmp_path / "good.sql")
    target = with_database(pg_admin_url, fresh_name("dst"))
    restore_pg(target, good)
    try:
        text = good.read_text()
        marker = "COPY public.organizations"
        broken = tmp_path / "broken.sql"  # valid up to the data, then a statement that fails
        broken.write_text(text.replace(marker, "SELECT no_such_function();\n" + marker, 1))
        # the dump's fault, not the server's: no advice to check the URL
        with pytest.raises(ValidationError, match="no_such_function"):
            restore_pg(target, broken, force=True)
        truncated = tmp_path / "truncated.dump"
        truncated.write_bytes(pg_dump(migrated_url, tmp_path / "t.dump", "-Fc").read_bytes()[
            :4096])
        with pytest.raises(ToolFailed, match="could not read from input file"):
            restore_pg(target, truncated, force=True)
        assert organizations(target) == ["Original"]
        assert scratch_databases(pg_admin_url) == []
    finally:
        drop_database(pg_admin_url, urlsplit_db(target))


def test_a_dump_of_something_else_than_a_platform_database_is_refused(
        pg_url: str, target_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE stranger (id int)")
    with pytest.raises(ValidationError, match="no migration ledger"):
        restore_pg(target_url, pg_dump(pg_url, tmp_path / "other.sql"))
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_bytes(b"\x00\x01binary")
    with pytest.raises(ValidationError, match="not a pg_dump file"):
        restore_pg(target_url, not_a_dump)
    with psycopg.connect(pg_admin_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (urlsplit_db(target_url),)).fetchone() is None
    assert scratch_databases(pg_admin_url) == []


@pytest.mark.slow
def test_restore_sh_reads_a_plain_sql_file_like_the_spec_shows(migrated_url: str,
                                                              target_url: str,
                                                              tmp_path: Path) -> None:
    fill(migrated_url, "Spec")
    dump = pg_dump(migrated_url, tmp_path / "backup-2026-01-06.sql")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    result = subprocess.run([sys.executable, "-m", "platformdb.cli", "restore", "postgresql",
                             str(dump)], env={**env, "PLATFORMDB_POSTGRES_URL": target_url},
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "organizations" in result.stdout and "no manifest" in result.stdout
    assert organizations(target_url) == ["Spec"]
    wrong = subprocess.run([sys.executable, "-m", "platformdb.cli", "restore", "clickhouse",
                            str(dump)], env={**env, "PLATFORMDB_POSTGRES_URL": target_url},
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "only PostgreSQL restores from a pg_dump file" in wrong.stderr


# ------------------------------------------------------------------ archives


@pytest.mark.slow
def test_backup_archive_writes_one_tar_that_restores_like_the_folder(
        migrated_url: str, target_url: str, tmp_path: Path) -> None:
    fill(migrated_url, "Archived")
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=None)
    [tar] = stores.backup(found, ["postgresql"], tmp_path, archive=True)
    assert tar.suffix == ".tar" and tar.is_file()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # no folder left
    assert archive.kind(tar) == "platformdb"
    assert backup_state.last_good(tmp_path)["postgresql"].folder == tar.name
    (result,) = restore_pg(target_url, tar)
    assert result.mismatches == []  # type: ignore[attr-defined]
    assert organizations(target_url) == ["Archived"]
    assert not list(tmp_path.glob(".platformdb-unpacked-*"))  # the unpacked copy is gone


@pytest.mark.slow
def test_a_tampered_archive_is_refused_before_the_target_is_touched(
        migrated_url: str, target_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    found = Endpoints(postgres=migrated_url, clickhouse=None, redis=None)
    [tar] = stores.backup(found, ["postgresql"], tmp_path, archive=True)
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tar) as source, tarfile.open(tampered, "w") as out:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if data is not None and member.name.endswith("postgresql.dump"):
                body = bytearray(data.read())
                body[len(body) // 2] ^= 0xFF
                out.addfile(member, io.BytesIO(bytes(body)))
            else:
                out.addfile(member, data)
    with pytest.raises(ValidationError, match="does not match its manifest"):
        restore_pg(target_url, tampered)
    with psycopg.connect(pg_admin_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (urlsplit_db(target_url),)).fetchone() is None


@pytest.mark.slow
def test_clickhouse_backup_tar_restores_on_chdb(stack_home: Path, migrated_template: str,
                                               pg_admin_url: str, tmp_path: Path) -> None:
    pg = with_database(pg_admin_url, migrated_template)
    source = settings_for(stack_home, pg, f"src_{uuid.uuid4().hex[:8]}")
    target = settings_for(stack_home, pg, f"dst_{uuid.uuid4().hex[:8]}")
    try:
        with connect(clickhouse_url(source)) as client:
            client.command("CREATE TABLE facts (id UInt32, note String)"
                           " ENGINE = MergeTree ORDER BY id")
            client.command("INSERT INTO facts SELECT number, toString(number)"
                           " FROM numbers(1000)")
            before = ch_backup.states(client, str(client.database))
        found = Endpoints(postgres=None, clickhouse=clickhouse_url(source), redis=None)
        [tar] = stores.backup(found, ["clickhouse"], tmp_path, archive=True)
        renamed = tar.rename(tmp_path / "backup-2026-01-06.tar")
        (result,) = restore_any(target, "clickhouse", renamed, verify=True)
        assert result.tables == before
    finally:
        for config in (source, target):
            with connect(clickhouse_url(config)) as client:
                client.command(f"DROP DATABASE IF EXISTS {client.database} SYNC")


def test_a_clickhouse_native_backup_archive_is_refused_with_what_to_do(tmp_path: Path) -> None:
    native = tmp_path / "backup-2026-01-06.tar"
    with tarfile.open(native, "w") as tar:
        info = tarfile.TarInfo(".backup")
        body = b"<config><version>1</version></config>"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    config = Settings(home=tmp_path, clickhouse_url=f"chdb://{tmp_path / 'ch'}")
    with pytest.raises(ValidationError, match=r"ClickHouse BACKUP archive.*RESTORE DATABASE"):
        restore_any(config, "clickhouse", native)


def test_a_failed_archive_backup_leaves_neither_folder_nor_tar(tmp_path: Path) -> None:
    found = Endpoints(postgres="postgresql://nobody@127.0.0.1:1/none", clickhouse=None,
                      redis=None)
    with pytest.raises(StoreUnavailable):
        stores.backup(found, ["postgresql"], tmp_path, archive=True)
    assert list(tmp_path.iterdir()) == []

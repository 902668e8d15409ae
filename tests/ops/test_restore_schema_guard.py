"""A backup whose migration ledger is behind the target's is refused unless
--force-older-schema, which restores it and migrates it up to the current head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb.errors import ValidationError
from platformdb.ops import backup as backups
from platformdb.stores import open_store
from platformdb.types import Endpoints
from tests.conftest import create_database, drop_database, fresh_name


@pytest.fixture
def older_backup(pg_admin_url: str, tmp_path: Path) -> Iterator[Path]:
    """A PostgreSQL backup taken before the last migration was applied."""
    name = fresh_name("older")
    url = create_database(pg_admin_url, name)
    try:
        store = open_store("postgresql", Endpoints(postgres=url))
        head = max(m.version for m in store.migrations())
        store.migrate_up(target=head - 1)
        (folder,) = backups.backup(Endpoints(postgres=url), ["postgresql"], tmp_path / "b")
        yield folder
    finally:
        drop_database(pg_admin_url, name)


def ledger(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [int(row[0]) for row in conn.execute(
            "SELECT version FROM platformdb.schema_migrations ORDER BY version")]


@pytest.mark.slow
def test_an_older_backup_is_refused_then_restored_and_migrated_up_when_forced(
        older_backup: Path, migrated_url: str) -> None:
    target = Endpoints(postgres=migrated_url)
    before = ledger(migrated_url)
    with pytest.raises(ValidationError, match="lacks 1 migration") as refused:
        backups.restore(target, ["postgresql"], older_backup, force=True)
    assert refused.value.hint is not None
    assert refused.value.hint.flag == "--force-older-schema"
    assert ledger(migrated_url) == before
    backups.restore(target, ["postgresql"], older_backup, force=True, force_older_schema=True)
    assert ledger(migrated_url) == before

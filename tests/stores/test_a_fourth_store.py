"""Adding a store is one folder plus one registry line: a throwaway fourth store, registered
here and nowhere else, shows up in health, stats, backups and migration status.

The store keeps "notes" (files) in a folder named by its URL (``notes:///path``); its
migrations are numbered files whose one line names a note to create. Everything it does
goes through the same protocol as PostgreSQL, ClickHouse and Redis.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from platformdb.backup.manifest import TableState, backup_folder, new_manifest, read_manifest
from platformdb.errors import StoreUnavailable
from platformdb.migrate.base import AppliedMigration, Migration
from platformdb.ops import backup, health, migrations, stats
from platformdb.ops.context import Context, store_names
from platformdb.ops.exporter import render
from platformdb.stores import registry
from platformdb.stores.base import StoreBase
from platformdb.types import Endpoints, Metric, Restored


class NotesDriver:
    """The migration driver: a JSON ledger beside the notes."""

    store = "notes"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = root / ".ledger.json"

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"no notes folder at {self.root}", store=self.store)

    def validate(self, migration: Migration, text: str) -> None:
        pass

    @contextmanager
    def lock(self) -> Iterator[None]:
        yield

    def ensure_ledger(self) -> None:
        if not self.ledger.exists():
            self.ledger.write_text("[]")

    def applied(self) -> list[AppliedMigration]:
        if not self.ledger.exists():
            return []
        return [AppliedMigration(row["version"], row["name"], row["checksum"],
                                 datetime.fromisoformat(row["applied_at"]), 0, row["by"])
                for row in json.loads(self.ledger.read_text())]

    def apply(self, migration: Migration, applied_by: str) -> int:
        (self.root / migration.sql.strip()).write_text(migration.name)
        rows = json.loads(self.ledger.read_text())
        rows.append({"version": migration.version, "name": migration.name,
                     "checksum": migration.checksum, "by": applied_by,
                     "applied_at": datetime.now(UTC).isoformat()})
        self.ledger.write_text(json.dumps(rows))
        return 0

    def revert(self, migration: Migration, down_sql: str) -> int:
        raise NotImplementedError

    def dump_schema(self) -> str:
        return "\n".join(sorted(p.name for p in self.root.iterdir()))

    def close(self) -> None:
        pass


class StagedNotes:
    def __init__(self, folder: Path, target: Path, report: Restored) -> None:
        self.folder, self.target, self.report = folder, target, report

    def switch(self) -> None:
        for note in self.folder.glob("*.note"):
            shutil.copy(note, self.target / note.name)

    def undo(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def discard(self) -> None:
        pass


class NotesStore(StoreBase):
    """The fourth store. Everything about it is in this class: no other file names it."""

    name = "notes"
    url_variable = "PLATFORMDB_NOTES_URL"
    numbered = True
    migrations_folder: ClassVar[Path]

    def root(self) -> Path:
        return Path(urlsplit(self.require_url()).path)

    def migrations_dir(self) -> Path:
        return self.migrations_folder

    def driver(self) -> NotesDriver:
        return NotesDriver(self.root())

    def metrics(self) -> list[Metric]:
        return [Metric(self.name, "notes", float(len(list(self.root().glob("*.note")))),
                       "notes kept")]

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        folder = backup_folder(out_dir, self.name)
        notes = sorted(self.root().glob("*.note"))
        for note in notes:
            shutil.copy(note, folder / note.name)
        digest = hashlib.sha256(b"".join(n.read_bytes() for n in notes)).hexdigest()
        new_manifest(self.name, tools={}, schema_version=None, migrations=[],
                     tables={"notes": TableState(len(notes), digest)}).write(folder)
        return folder

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> StagedNotes:
        manifest = read_manifest(folder, self.name)
        return StagedNotes(folder, self.root(), Restored(self.name, self.target,
                                                         dict(manifest.tables), []))


@pytest.fixture
def notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The fourth store registered (for this test only), with two migrations to apply; a
    context where only it is reachable (the others: no server configured)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first_note.sql").write_text("first.note\n")
    (folder / "002_second_note.sql").write_text("second.note\n")
    monkeypatch.setattr(NotesStore, "migrations_folder", folder, raising=False)
    monkeypatch.setitem(registry.REGISTRY, "notes", NotesStore)
    (tmp_path / "notes").mkdir()
    return Context(Endpoints(urls={"notes": f"notes://{tmp_path / 'notes'}"}, home=tmp_path))


def test_the_registry_line_is_all_it_takes_to_be_one_of_the_stores(notes: Context) -> None:
    assert store_names() == ("postgresql", "clickhouse", "redis", "notes")
    assert registry.numbered_names() == ("postgresql", "clickhouse", "notes")
    assert registry.url_variable("notes") == "PLATFORMDB_NOTES_URL"


def test_migrate_status_and_up_reach_the_fourth_store(notes: Context) -> None:
    before = migrations.status(notes, ["notes"])
    assert [(row.version, row.state) for row in before["notes"]] == [(1, "pending"),
                                                                     (2, "pending")]
    steps = migrations.up(notes, ["notes"], to=1)
    assert [(step.store, step.label) for step in steps] == [("notes", "001_first_note")]
    after = migrations.status(notes, ["notes"])
    assert [row.state for row in after["notes"]] == ["applied", "pending"]


def test_health_lists_the_fourth_store_after_the_others(notes: Context) -> None:
    rows = health.check(notes)
    assert [row.store for row in rows] == ["postgresql", "clickhouse", "redis", "notes"]
    assert not rows[-1].healthy and rows[-1].pending_migrations == ["001_first_note",
                                                                    "002_second_note"]
    migrations.up(notes, ["notes"])
    mine = health.check(notes, ["notes"])
    assert [(row.store, row.healthy, row.detail) for row in mine] == [("notes", True, "ok")]


def test_stats_and_the_exporter_report_the_fourth_store(notes: Context) -> None:
    migrations.up(notes, ["notes"])
    found, errors = stats.collect(notes, ["notes"])
    assert Metric("notes", "notes", 2.0, "notes kept") in found
    assert Metric("migrations", "pending", 0.0, found_help(found, "pending"),
                  {"store": "notes"}) in found
    assert errors == []
    text = render(notes)
    assert 'platformdb_up{store="notes"} 1.0' in text
    assert "platformdb_notes_notes 2.0" in text


def found_help(found: list[Metric], name: str) -> str:
    return next(m.help for m in found if m.store == "migrations" and m.name == name)


def test_a_backup_of_the_fourth_store_is_recorded_and_restores(notes: Context,
                                                                tmp_path: Path) -> None:
    migrations.up(notes, ["notes"])
    started = time.time()
    [folder] = backup.backup(notes, ["notes"], tmp_path / "backups")
    assert folder.name.startswith("notes-")
    assert read_manifest(folder, "notes").tables["notes"].rows == 2
    ages, _ = stats.collect(notes, ["notes"], stats.StatsConfig(backup_dir=tmp_path / "backups"))
    [stamp] = [m.value for m in ages if m.store == "backup" and m.labels == {"store": "notes"}
               and m.name == "last_success_timestamp_seconds"]
    assert stamp >= int(started)
    for note in (tmp_path / "notes").glob("*.note"):
        note.unlink()
    [restored] = backup.restore(notes, ["notes"], tmp_path / "backups")
    assert asdict(restored)["store"] == "notes"
    assert sorted(p.name for p in (tmp_path / "notes").glob("*.note")) == ["first.note",
                                                                           "second.note"]

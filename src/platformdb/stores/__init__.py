"""The store model: one object per store, and the registry every command loops over.

Each store object owns, for its store: where it is (a URL, resolved once by the
caller), health, metrics, migrations, backup and restore. Commands never branch
on a store's name; they ask the registry for the stores they visit and call the
same methods on each::

    for store in open_stores(endpoints, ["postgresql", "redis"]):
        print(store.health())

Adding a store is one module here plus one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb.backup import Staged
from platformdb.backup.archive import opened, pack
from platformdb.backup.manifest import read_manifest
from platformdb.backup.sets import (
    backup_set,
    part_for,
    restore_set,
    set_parts_verified,
    stage_and_switch,
)
from platformdb.backup.state import record, verified
from platformdb.errors import ValidationError
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.base import Store, StoreBase, Unavailable
from platformdb.stores.clickhouse import ClickHouseStore
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.redis import RedisStore
from platformdb.stores.registry import REGISTRY, open_store, open_stores
from platformdb.types import Endpoints, Restored, Step, check_stores

__all__ = [
    "REGISTRY",
    "ClickHouseStore",
    "PostgresStore",
    "RedisStore",
    "Staged",
    "Store",
    "Unavailable",
    "apply_pending",
    "backup",
    "backup_set",
    "open_store",
    "open_stores",
    "restore",
    "restore_set",
]


def apply_pending(endpoints: Endpoints, names: list[str] | None = None, *,
                  target: int | None = None, dry_run: bool = False,
                  options: MigrateOptions | None = None) -> list[Step]:
    """Apply every pending migration of each store (all stores by default), up to
    ``target`` where given (Redis scripts have no numbers: ``target`` does not apply).
    ``options``: lock timeout, retries and runner wait of the migrations."""
    steps: list[Step] = []
    for store in open_stores(endpoints, names):
        if options is not None and isinstance(store, StoreBase):
            store.migrate_options = options
        steps.extend(store.migrate_up(target=target, dry_run=dry_run))
    return steps


def backup(endpoints: Endpoints, names: list[str] | None, out_dir: Path, *,
           archive: bool = False, **options: Any) -> list[Path]:
    """Back up each store of ``names`` into its own folder under ``out_dir``.

    ``names=None`` (``backup all``) writes one backup set instead: see :mod:`.sets`.
    Each backup is checked against its manifest and recorded as its store's last
    good backup in ``out_dir`` (:mod:`platformdb.backup.state`, read by the exporter).
    ``archive``: each folder becomes one ``.tar`` file (:mod:`platformdb.backup.archive`).
    """
    if names is None:
        folder = backup_set(open_stores(endpoints), out_dir, **options)
        goods = set_parts_verified(out_dir, folder)
        if archive:
            folder = pack(folder)
            goods = [replace(good, folder=f"{folder.name}/{good.folder.split('/', 1)[1]}")
                     for good in goods]
        record(out_dir, goods)
        return [folder]
    written = []
    for store in open_stores(endpoints, names):
        started = datetime.now(UTC)
        folder = store.backup(out_dir, **options)
        good = verified(out_dir, store.name, folder, started, datetime.now(UTC))
        if archive:
            folder = pack(folder)
            good = replace(good, folder=folder.name, bytes=folder.stat().st_size)
        record(out_dir, [good])
        written.append(folder)
    return written


def restore(endpoints: Endpoints, names: list[str] | None, path: Path, *,
            force: bool = False, verify: bool = False) -> list[Restored]:
    """Restore ``names`` from ``path``, all or nothing.

    ``names=None`` (``restore all``) restores a backup set (``path`` or the newest
    set in it). Named stores take their backup from a part folder, a set, or
    the newest of either in ``path``. Every manifest is checked before any
    store is touched; every store is staged before any is switched in.
    ``path`` may also be a file: a ``.tar`` that ``backup --archive`` wrote (of a
    folder or a set), or, for PostgreSQL, a ``pg_dump`` file (plain SQL, custom or
    tar format), which is staged and switched in the same way.
    """
    with opened(path) as found:
        if names is None:
            every = {store.name: store for store in open_stores(endpoints)}
            return restore_set(every, found, force=force, verify=verify)
        if found.is_file():
            if check_stores(names) != ["postgresql"]:
                raise ValidationError(f"{path} is a file but no platformdb archive: only "
                                      "PostgreSQL restores from a pg_dump file")
            return stage_and_switch([(open_store("postgresql", endpoints), found)],
                                    force=force, verify=verify)
        parts = [(name, part_for(found, name)) for name in check_stores(names)]
        for name, part in parts:
            read_manifest(part, name)
        return stage_and_switch([(open_store(name, endpoints), part) for name, part in parts],
                                force=force, verify=verify)

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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from platformdb.backup import find_backups
from platformdb.backup.manifest import read_manifest
from platformdb.errors import ValidationError
from platformdb.stores.base import Store, Unavailable
from platformdb.stores.clickhouse import ClickHouseStore
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.redis import RedisStore
from platformdb.types import (
    STORE_NAMES,
    Endpoints,
    Restored,
    Step,
    check_store,
    check_stores,
)

__all__ = [
    "REGISTRY",
    "ClickHouseStore",
    "PostgresStore",
    "RedisStore",
    "Store",
    "Unavailable",
    "apply_pending",
    "backup",
    "open_store",
    "open_stores",
    "restore",
]

REGISTRY: dict[str, Callable[[Endpoints], Store]] = {
    "postgresql": PostgresStore.from_endpoints,
    "clickhouse": ClickHouseStore.from_endpoints,
    "redis": RedisStore.from_endpoints,
}
assert tuple(REGISTRY) == STORE_NAMES


def open_store(name: str, endpoints: Endpoints) -> Store:
    """The store object ``name`` for ``endpoints`` (nothing is connected yet)."""
    return REGISTRY[check_store(name)](endpoints)


def open_stores(endpoints: Endpoints, names: list[str] | None = None) -> list[Store]:
    """The store objects of ``names`` (default: every store), in registry order."""
    return [open_store(name, endpoints) for name in check_stores(names)]


def apply_pending(endpoints: Endpoints, names: list[str] | None = None, *,
                  target: int | None = None, dry_run: bool = False) -> list[Step]:
    """Apply every pending migration of each store (all stores by default), up to
    ``target`` where given (Redis scripts have no numbers: ``target`` does not apply)."""
    steps: list[Step] = []
    for store in open_stores(endpoints, names):
        steps.extend(store.migrate_up(target=target, dry_run=dry_run))
    return steps


def backup(endpoints: Endpoints, names: list[str] | None, out_dir: Path,
           **options: Any) -> list[Path]:
    """Back up each store of ``names`` (default: all) into a new folder under ``out_dir``."""
    return [store.backup(out_dir, **options) for store in open_stores(endpoints, names)]


def restore(endpoints: Endpoints, names: list[str] | None, path: Path, *,
            force: bool = False, verify: bool = False) -> list[Restored]:
    """Restore ``names`` (default: every store ``path`` holds a backup of) from ``path``.

    ``path`` is one backup folder or a folder of them (the newest per store).
    Every manifest is checked before any store is touched.
    """
    wanted = check_stores(names)
    available = find_backups(path)
    if names:
        for name in wanted:
            if name not in available:
                raise ValidationError(f"{path} holds no {name} backup")
    else:
        wanted = [name for name in wanted if name in available]
    for name in wanted:
        read_manifest(available[name], name)
    return [open_store(name, endpoints).restore(available[name], force=force, verify=verify)
            for name in wanted]

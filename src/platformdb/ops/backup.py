"""``platformdb backup | restore``: which stores, and where their backups go or come from.

The formats are the stores' (``stores/<store>/backup.py``); sets, archives, the
record of good backups and the staged switch are the generic machinery of
:mod:`platformdb.backup`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb.backup.archive import has_manifest, opened, pack
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
from platformdb.ops.context import Context, context
from platformdb.stores import registry
from platformdb.types import Endpoints, Restored

__all__ = ["backup", "has_manifest", "restore"]


def backup(target: Context | Endpoints, names: list[str] | None, out_dir: Path, *,
           archive: bool = False, **options: Any) -> list[Path]:
    """Back up each store of ``names`` into its own folder under ``out_dir``.

    ``names=None`` (``backup all``) writes one backup set instead: see
    :mod:`platformdb.backup.sets`. Each backup is checked against its manifest and
    recorded as its store's last good backup in ``out_dir``
    (:mod:`platformdb.backup.state`, read by the exporter). ``archive``: each folder
    becomes one ``.tar`` file (:mod:`platformdb.backup.archive`).
    """
    ctx = context(target)
    if names is None:
        folder = backup_set(ctx.stores(), out_dir, **options)
        goods = set_parts_verified(out_dir, folder)
        if archive:
            folder = pack(folder)
            goods = [replace(good, folder=f"{folder.name}/{good.folder.split('/', 1)[1]}")
                     for good in goods]
        record(out_dir, goods)
        return [folder]
    written = []
    for store in ctx.stores(names):
        started = datetime.now(UTC)
        folder = store.backup(out_dir, **options)
        good = verified(out_dir, store.name, folder, started, datetime.now(UTC))
        if archive:
            folder = pack(folder)
            good = replace(good, folder=folder.name, bytes=folder.stat().st_size)
        record(out_dir, [good])
        written.append(folder)
    return written


def restore(target: Context | Endpoints, names: list[str] | None, path: Path, *,
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
    ctx = context(target)
    with opened(path) as found:
        if names is None:
            every = {store.name: store for store in ctx.stores()}
            return restore_set(every, found, force=force, verify=verify)
        if found.is_file():
            if registry.check_stores(names) != ["postgresql"]:
                raise ValidationError(f"{path} is a file but no platformdb archive: only "
                                      "PostgreSQL restores from a pg_dump file")
            return stage_and_switch([(ctx.store("postgresql"), found)],
                                    force=force, verify=verify)
        parts = [(name, part_for(found, name)) for name in registry.check_stores(names)]
        for name, part in parts:
            read_manifest(part, name)
        return stage_and_switch([(ctx.store(name), part) for name, part in parts],
                                force=force, verify=verify)

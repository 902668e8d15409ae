"""Backups of every store into folders with manifests, and restores from them.

Each store's module writes and reads its own folder: :mod:`.postgres`
(pg_dump), :mod:`.clickhouse` (Native tables + DDL), :mod:`.redis` (a logical
dump). Which stores a command backs up, and where they are, is the store
objects' business (:func:`platformdb.stores.backup`, :func:`platformdb.stores.restore`).
"""

from __future__ import annotations

from pathlib import Path

from platformdb.backup.manifest import MANIFEST
from platformdb.errors import ValidationError
from platformdb.types import Restored

__all__ = ["Restored", "find_backups"]


def find_backups(path: Path) -> dict[str, Path]:
    """The store folders in ``path``: the folder itself, or its newest child per store."""
    if (path / MANIFEST).is_file():
        return {path.name.split("-", 1)[0]: path}
    found: dict[str, Path] = {}
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if (child / MANIFEST).is_file():
                found[child.name.split("-", 1)[0]] = child  # sorted: the newest wins
    if not found:
        raise ValidationError(f"no backup found at {path}")
    return found

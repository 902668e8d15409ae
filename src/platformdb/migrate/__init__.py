"""The migration engine and one driver per store.

The engine (:mod:`.engine`) holds every rule about ordering, checksums and
refusals; a store is a driver behind the small :class:`Driver` protocol
(:mod:`.postgres`, :mod:`.clickhouse`, :mod:`.redis`). Which store a command
migrates, and where it is, is decided by the store objects
(:mod:`platformdb.stores`), which build a :class:`Migrator` for their driver.
"""

from __future__ import annotations

from pathlib import Path

from platformdb.errors import ConfigError
from platformdb.migrate.base import AppliedMigration, Driver, Migration
from platformdb.migrate.engine import Migrator
from platformdb.migrate.files import discover, next_file_names
from platformdb.resources import data_dir
from platformdb.types import StatusRow, Step

__all__ = [
    "NUMBERED_STORES",
    "AppliedMigration",
    "Driver",
    "Migration",
    "Migrator",
    "StatusRow",
    "Step",
    "check_numbered",
    "discover",
    "migrations_dir",
    "new_migration",
]

NUMBERED_STORES = ("postgresql", "clickhouse")
"""Stores whose migrations are numbered SQL files (``NNN_name.sql``)."""


def check_numbered(store: str) -> str:
    """``store`` if it has numbered migration files, else a :class:`ConfigError`."""
    if store not in NUMBERED_STORES:
        raise ConfigError(f"{store} has no numbered migrations; choose one of "
                          f"{', '.join(NUMBERED_STORES)}")
    return store


def migrations_dir(store: str) -> Path:
    return data_dir(store) / "migrations"


def new_migration(store: str, name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Create the next numbered up/down pair for ``store`` from a template."""
    folder = directory or migrations_dir(check_numbered(store))
    up_path, down_path = next_file_names(folder, name)
    up_path.write_text(
        f"-- {up_path.stem}: say here WHY this migration exists.\n"
        f"-- Keep it idempotent (IF NOT EXISTS / IF EXISTS) and never edit it once applied.\n\n"
    )
    down_path.write_text(f"-- Reverts {up_path.name}.\n\n")
    return up_path, down_path

"""The migration engine, generic over stores.

The engine (:mod:`.engine`) holds every rule about ordering, checksums and
refusals; a store is a driver behind the small :class:`Driver` protocol
(:mod:`.base`), one per store in its folder (``stores/<store>/driver.py``).
Files (:mod:`.files`), options and lock retries (:mod:`.options`, :mod:`.retry`),
what a plan reports (:mod:`.planning`) and schema snapshots (:mod:`.snapshot`)
are shared. Which store a command migrates, and where it is, is decided by the
store objects (:mod:`platformdb.stores`), which build a :class:`Migrator` for
their driver.
"""

from __future__ import annotations

from pathlib import Path

from platformdb.migrate.base import AppliedMigration, Driver, Migration
from platformdb.migrate.engine import Migrator
from platformdb.migrate.files import discover, next_file_names
from platformdb.resources import data_dir
from platformdb.types import StatusRow, Step

__all__ = [
    "AppliedMigration",
    "Driver",
    "Migration",
    "Migrator",
    "StatusRow",
    "Step",
    "discover",
    "migrations_dir",
    "new_migration",
]

def migrations_dir(store: str) -> Path:
    return data_dir(store) / "migrations"


def new_migration(store: str, name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Create the next numbered up/down pair for ``store`` from a template (the caller
    checks that the store's migrations are numbered)."""
    folder = directory or migrations_dir(store)
    up_path, down_path = next_file_names(folder, name)
    up_path.write_text(
        f"-- {up_path.stem}: say here WHY this migration exists.\n"
        f"-- Keep it idempotent (IF NOT EXISTS / IF EXISTS) and never edit it once applied.\n\n"
    )
    down_path.write_text(f"-- Reverts {up_path.name}.\n\n")
    return up_path, down_path

"""Backups into folders with manifests, and staged restores from them: the generic part.

A backup is one folder per store with its manifest (:mod:`.manifest`), packed
into one file on request (:mod:`.archive`), recorded as the last good one
(:mod:`.state`); ``backup all`` writes one set (:mod:`.sets`). Each store's own
format and staged restore live with the store (``stores/<store>/backup.py``)
behind the two protocols below; which stores a command backs up, and where
they are, is decided by :mod:`platformdb.ops.backup`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from platformdb.backup.manifest import MANIFEST
from platformdb.errors import ValidationError
from platformdb.types import Restored

__all__ = ["BackupTarget", "Restored", "Staged", "Switchable", "find_backups"]


class Switchable(Protocol):
    """Something staged beside its target that can be switched in, undone, committed or
    discarded (a restore's part, a tenant import's part)."""

    def switch(self) -> None: ...

    def undo(self) -> None: ...

    def commit(self) -> None: ...

    def discard(self) -> None: ...


class Staged(Protocol):
    """A restore prepared beside its target and verified there; nothing switched yet."""

    report: Restored

    def switch(self) -> None:
        """Put the staged data in the target's place (the old contents are kept aside)."""

    def undo(self) -> None:
        """After :meth:`switch`: put the old contents back."""

    def commit(self) -> None:
        """After :meth:`switch`: drop the old contents; the restore is final."""

    def discard(self) -> None:
        """Before :meth:`switch`: drop the staged data; the target never changed."""


class BackupTarget(Protocol):
    """What backs up into a folder and restores beside itself: a store object."""

    @property
    def name(self) -> str:
        """The store's name: the prefix of its backup folders (``postgresql-<time>``)."""

    def backup(self, out_dir: Path, **options: Any) -> Path:
        """Write one backup folder (with its manifest) under ``out_dir``."""

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> Staged:
        """Restore ``folder`` beside the target and verify it; the target is untouched."""


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

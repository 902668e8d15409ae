"""Backup sets: every store backed up as one set, restored all or nothing.

``backup all`` writes one folder ``set-<UTC time>/`` holding each store's part
(its own folder and manifest, as a single-store backup writes) and a set
manifest naming every part and the point in time it shows: the PostgreSQL
snapshot and WAL position, the ClickHouse and Redis server times.

``restore all`` checks every part against its manifest first, then *stages*
every store (restores it beside the target and verifies it there), and only
when all stages are ready *switches* them in, one after the other. A failure
before the switch drops the stages and changes nothing; a switch that fails
puts the already-switched stores back. Only then are the previous contents
dropped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb import __version__
from platformdb.backup import BackupTarget, Staged, Switchable, find_backups
from platformdb.backup.manifest import (
    MANIFEST,
    file_sha256,
    private_dir,
    private_tree,
    read_manifest,
    write_private,
)
from platformdb.backup.state import GoodBackup, verified
from platformdb.errors import Hint, ValidationError
from platformdb.journal import COMMITTING, DISCARDING, SWITCHING, UNDOING, Journal, crash_point
from platformdb.types import Restored

SET_PREFIX = "set-"
SET_KIND = "platformdb-backup-set"
SET_FORMAT = 1


@dataclass(frozen=True)
class BackupSet:
    """A set on disk: its folder and, per store, its part's folder."""

    folder: Path
    created_at: str
    parts: dict[str, Path]
    points: dict[str, dict[str, Any]]


def is_set(path: Path) -> bool:
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text()).get("kind") == SET_KIND)
    except ValueError:
        return False


def backup_set(stores: Sequence[BackupTarget], out_dir: Path, **options: Any) -> Path:
    """Back up every store of ``stores`` as one set under ``out_dir``.

    A backup that fails leaves no folder behind.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = private_dir(out_dir / f"{SET_PREFIX}{stamp}")  # owner-only, whatever the umask
    parts: dict[str, dict[str, Any]] = {}
    try:
        for store in stores:
            started = datetime.now(UTC).isoformat()
            part = store.backup(folder, **options)
            manifest = read_manifest(part, store.name)
            parts[store.name] = {
                "folder": part.name,
                "manifest_sha256": file_sha256(part / MANIFEST),
                "started_at": started,
                "finished_at": datetime.now(UTC).isoformat(),
                "point": manifest.extra.get("point", {"taken_at": manifest.created_at}),
            }
        document = {"kind": SET_KIND, "format_version": SET_FORMAT,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "platformdb_version": __version__, "parts": parts}
        write_private(folder / MANIFEST, json.dumps(document, indent=2, sort_keys=True) + "\n")
        private_tree(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def set_parts_verified(out_dir: Path, folder: Path) -> list[GoodBackup]:
    """Every part of the set in ``folder``, checked against its manifest (see
    :mod:`platformdb.backup.state`: what ``backup`` records as the last good backups)."""
    document = json.loads((folder / MANIFEST).read_text())
    return [verified(out_dir, store, folder / str(info["folder"]),
                     datetime.fromisoformat(info["started_at"]),
                     datetime.fromisoformat(info["finished_at"]))
            for store, info in sorted(document["parts"].items())]


def read_set(folder: Path) -> BackupSet:
    """The set in ``folder``, after checking that every part is there and untouched."""
    path = folder / MANIFEST
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path} cannot be read: {exc}") from exc
    if document.get("kind") != SET_KIND:
        raise ValidationError(f"{folder} is not a backup set")
    if int(document.get("format_version", 0)) > SET_FORMAT:
        raise ValidationError(f"{folder} was written by a newer platformdb; upgrade to restore it")
    parts: dict[str, Path] = {}
    points: dict[str, dict[str, Any]] = {}
    for store, info in sorted(document.get("parts", {}).items()):
        part = folder / str(info["folder"])
        if not (part / MANIFEST).is_file():
            raise ValidationError(f"the {store} part of {folder} is missing; refusing to restore")
        if file_sha256(part / MANIFEST) != info["manifest_sha256"]:
            raise ValidationError(f"the {store} part of {folder} does not match the set "
                                  "manifest; refusing to restore")
        parts[store] = part
        points[store] = dict(info.get("point") or {})
    return BackupSet(folder, str(document.get("created_at", "")), parts, points)


def find_set(path: Path) -> BackupSet:
    """``path`` if it is a set, else the newest set inside it."""
    if is_set(path):
        return read_set(path)
    sets = sorted(child for child in path.iterdir() if child.name.startswith(SET_PREFIX)
                  and is_set(child)) if path.is_dir() else []
    if not sets:
        if _has_parts(path):
            raise ValidationError(f"no backup set found at {path} (it holds single-store "
                                  "backups: restore them one store at a time)",
                                  hint=Hint(command="platformdb restore STORE PATH"))
        raise ValidationError(f"no backup set found at {path}")
    return read_set(sets[-1])


def _has_parts(path: Path) -> bool:
    try:
        return bool(find_backups(path))
    except ValidationError:
        return False


def part_for(path: Path, store: str) -> Path:
    """The backup of ``store`` at ``path``: a part folder, a set's part, or the newest one."""
    if is_set(path):
        found = read_set(path)
        if store not in found.parts:
            raise ValidationError(f"the backup set {path} holds no {store} part")
        return found.parts[store]
    if (path / MANIFEST).is_file():
        return path
    candidates: list[tuple[str, Path]] = []
    if path.is_dir():
        for child in path.iterdir():
            if child.name.startswith(f"{store}-") and (child / MANIFEST).is_file():
                candidates.append((child.name.removeprefix(f"{store}-"), child))
            elif child.name.startswith(SET_PREFIX) and is_set(child):
                found = read_set(child)
                if store in found.parts:
                    candidates.append((child.name.removeprefix(SET_PREFIX), found.parts[store]))
    if not candidates:
        raise ValidationError(f"{path} holds no {store} backup")
    return max(candidates)[1]


def restore_set(stores: Mapping[str, BackupTarget], path: Path, *, force: bool = False,
                verify: bool = False, every: bool = True, journal: Journal | None = None,
                before_switch: Callable[[Sequence[Staged]], None] | None = None,
                ) -> list[Restored]:
    """Restore a set (``path`` or the newest set in it): all stores or none.

    ``stores``: the store objects to restore, by name, in the order they are staged.
    ``every``: the stores are all there are, and the set's parts say which of them
    are restored; otherwise each of ``stores`` must have its part in the set.
    ``journal``: where each step is written before it is taken (:func:`stage_and_switch`).
    """
    found = find_set(path)
    wanted = [name for name in stores if not every or name in found.parts]
    for name in wanted:
        if name not in found.parts:
            raise ValidationError(f"the backup set {found.folder} holds no {name} part")
        read_manifest(found.parts[name], name)  # every file of every part, before anything
    return stage_and_switch([(stores[name], found.parts[name]) for name in wanted],
                            force=force, verify=verify, journal=journal,
                            before_switch=before_switch)


def stage_and_switch(items: Sequence[tuple[BackupTarget, Path]], *, force: bool,
                     verify: bool, journal: Journal | None = None,
                     before_switch: Callable[[Sequence[Staged]], None] | None = None,
                     ) -> list[Restored]:
    """Stage every (store, folder), then switch them all in; all or nothing.

    With a ``journal``, every step is written to it before it is taken: each store's
    scratch names once staged, the switch of each, the commit. A process killed at any
    point leaves the journal, from which ``platformdb recover`` rolls the restore back
    (killed while staging: nothing was switched) or forward (killed while switching or
    committing: every stage was ready and verified); see :mod:`platformdb.journal`.
    ``before_switch``: run on the staged copies once all are ready (a failure discards
    them), e.g. to migrate an older schema up before it goes live.
    """
    names = [store.name for store, _ in items]
    for store, folder in items:
        _note(journal, store.name, phase="planned", folder=str(folder.resolve()))
    staged: list[Staged] = []
    try:
        for store, folder in items:
            _note(journal, store.name, phase="staging")
            crash_point(f"staging:{store.name}")
            stage = store.stage(folder, force=force, verify=verify)
            staged.append(stage)
            _note(journal, store.name, phase="staged", **journal_record(stage))
            crash_point(f"staged:{store.name}")
        if before_switch is not None:
            before_switch(staged)
    except BaseException as failure:
        if journal is not None:
            journal.set_phase(DISCARDING)
        clean = True
        for stage, name in reversed(list(zip(staged, names, strict=False))):
            try:
                stage.discard()
                _note(journal, name, phase="discarded")
            except Exception as exc:
                clean = False
                failure.add_note(f"could not drop the staged copy of {name}: {exc}")
        if journal is not None and clean:
            journal.finish()  # a failing stage drops its own scratch
        elif journal is not None:
            failure.add_note("`platformdb recover` drops what is left")
        raise
    if journal is not None:
        journal.set_phase(SWITCHING)
    crash_point("switching")
    switch_in(staged, names, journal=journal)
    if journal is not None:
        journal.finish()
    return [stage.report for stage in staged]


def journal_record(stage: object) -> dict[str, Any]:
    """What a staged part says a recovery needs (its scratch names), if it says anything."""
    record = getattr(stage, "journal_record", None)
    return dict(record()) if callable(record) else {}


def _note(journal: Journal | None, name: str, **fields: Any) -> None:
    if journal is not None:
        journal.part(name, **fields)


def switch_in(staged: Sequence[Switchable], names: Sequence[str], *,
              journal: Journal | None = None) -> None:
    """Switch every staged part in, in order, then commit them all. A switch that fails
    puts the parts already switched back (the first failure is raised, with a note for
    each part that could not be put back) and discards the others. ``journal``: each
    step is written to it first (:func:`stage_and_switch`)."""
    switched: list[Switchable] = []
    try:
        for stage, name in zip(staged, names, strict=True):
            _note(journal, name, phase="switching", **journal_record(stage))
            crash_point(f"switching:{name}")
            stage.switch()
            switched.append(stage)
            _note(journal, name, phase="switched")
            crash_point(f"switched:{name}")
    except BaseException as failure:
        if journal is not None:
            journal.set_phase(UNDOING)
        clean = True
        for stage in reversed(switched):
            name = names[staged.index(stage)]
            try:
                stage.undo()
                _note(journal, name, phase="undone")
            except Exception as exc:  # keep undoing the others; the first failure is raised
                clean = False
                failure.add_note(f"could not put {name} back: {exc}")
        for stage in staged:
            if stage not in switched:
                try:
                    stage.discard()
                    _note(journal, names[staged.index(stage)], phase="discarded")
                except Exception as exc:
                    clean = False
                    failure.add_note(f"could not drop the staged copy of "
                                     f"{names[staged.index(stage)]}: {exc}")
        if journal is not None and clean:
            journal.finish()
        elif journal is not None:
            failure.add_note("`platformdb recover` finishes putting it back")
        raise
    if journal is not None:
        journal.set_phase(COMMITTING)
    crash_point("committing")
    for stage, name in zip(switched, names, strict=True):
        stage.commit()
        _note(journal, name, phase="committed")
        crash_point(f"committed:{name}")

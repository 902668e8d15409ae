"""The record of the last good backup of each store, kept beside the backups.

A backup is **good** when its folder was written completely and every file in
it, read back from disk, matches the manifest (the same check a restore makes
first, :func:`platformdb.backup.manifest.read_manifest`). ``platformdb backup``
makes that check right after writing and records the backup in
``<backup folder>/platformdb-backups.json``: per store, the folder, when it
finished, its size and how long it took. The exporter reads that file
(``--backup-dir`` / ``PLATFORMDB_BACKUP_DIR``) for the age of the last good
backup per store, and the "backup too old" alert fires on it.

The file is replaced atomically under a lock, so concurrent backups into one
folder keep each other's entries. A backup that fails, or whose files do not
verify, is never recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from platformdb.backup.manifest import FILE_MODE, read_manifest
from platformdb.locks import exclusive

STATE_FILE = "platformdb-backups.json"


@dataclass(frozen=True)
class GoodBackup:
    """One store's last good backup."""

    store: str
    folder: str
    """Relative to the backup folder (a set's part: ``set-.../<store>-...``)."""
    finished_at: datetime
    bytes: int
    seconds: float


def verified(backup_dir: Path, store: str, folder: Path, started_at: datetime,
             finished_at: datetime) -> GoodBackup:
    """``folder`` as a good backup of ``store``, after checking every file against its
    manifest (:class:`~platformdb.errors.ValidationError` when one does not match)."""
    manifest = read_manifest(folder, store)
    size = sum(int(entry.get("bytes", 0)) for entry in manifest.files.values())
    return GoodBackup(store, os.path.relpath(folder, backup_dir), finished_at, size,
                      round((finished_at - started_at).total_seconds(), 3))


def record(backup_dir: Path, goods: list[GoodBackup]) -> None:
    """Record each of ``goods`` as its store's last good backup."""
    with _locked(backup_dir):
        entries = _read(backup_dir)
        entries.update({good.store: good for good in goods})
        _write(backup_dir, entries)


def verify_and_record(backup_dir: Path, store: str, folder: Path, started_at: datetime,
                      finished_at: datetime) -> GoodBackup:
    """:func:`verified`, then :func:`record`: nothing is recorded for a backup that fails."""
    good = verified(backup_dir, store, folder, started_at, finished_at)
    record(backup_dir, [good])
    return good


def last_good(backup_dir: Path) -> dict[str, GoodBackup]:
    """The recorded last good backup of each store (empty when none was recorded)."""
    return _read(backup_dir)


def _read(backup_dir: Path) -> dict[str, GoodBackup]:
    path = backup_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: as if nothing was recorded (the backup alert fires)
    found = {}
    for store, entry in dict(raw.get("stores", {})).items():
        try:
            found[store] = GoodBackup(store, str(entry["folder"]),
                                      datetime.fromisoformat(entry["finished_at"]),
                                      int(entry["bytes"]), float(entry["seconds"]))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _write(backup_dir: Path, entries: dict[str, GoodBackup]) -> None:
    stores: dict[str, dict[str, object]] = {}
    for store, good in sorted(entries.items()):
        entry: dict[str, object] = {**asdict(good), "finished_at": good.finished_at.isoformat()}
        entry.pop("store")
        stores[store] = entry
    document = {"kind": "platformdb-last-good-backups", "stores": stores}
    write_atomically(backup_dir / STATE_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _locked(backup_dir: Path) -> contextlib.AbstractContextManager[None]:
    lock = backup_dir / ".platformdb-backups.lock"
    with contextlib.suppress(FileExistsError):  # made owner-only before the lock opens it
        os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return exclusive(lock)


# ------------------------------------------------------------------ restore drills

VERIFIED_FILE = "platformdb-verified.json"


@dataclass(frozen=True)
class Verification:
    """The outcome of the last restore drill (``platformdb backup verify``) of a set."""

    set: str
    """The set's folder, relative to the backup folder."""
    finished_at: datetime
    seconds: float
    """How long restoring the set into scratch targets and checking it took: the
    measured recovery time."""
    ok: bool
    reason: str = ""
    """Why it failed (one line); empty when it passed."""
    restore_seconds: float = 0.0
    """Of ``seconds``, the time restoring the stores into scratch took (the checks not
    included)."""


def record_verification(backup_dir: Path, outcome: Verification) -> None:
    """Record ``outcome`` as the last drill (and, when it passed, the last verified one)."""
    with _locked(backup_dir):
        found = _read_verifications(backup_dir)
        found["last"] = outcome
        if outcome.ok:
            found["last_ok"] = outcome
        document = {"kind": "platformdb-verified-backups",
                    **{key: {**asdict(value), "finished_at": value.finished_at.isoformat()}
                       for key, value in sorted(found.items())}}
        write_atomically(backup_dir / VERIFIED_FILE,
                         json.dumps(document, indent=2, sort_keys=True) + "\n")


def last_verification(backup_dir: Path) -> Verification | None:
    """The last drill, passed or not (None when none ran)."""
    return _read_verifications(backup_dir).get("last")


def last_verified(backup_dir: Path) -> Verification | None:
    """The last drill that passed (None when none did)."""
    return _read_verifications(backup_dir).get("last_ok")


def _read_verifications(backup_dir: Path) -> dict[str, Verification]:
    try:
        raw = json.loads((backup_dir / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, Verification] = {}
    for key in ("last", "last_ok"):
        entry = raw.get(key)
        try:
            found[key] = Verification(str(entry["set"]),
                                      datetime.fromisoformat(entry["finished_at"]),
                                      float(entry["seconds"]), bool(entry["ok"]),
                                      str(entry.get("reason", "")),
                                      float(entry.get("restore_seconds", 0.0)))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, owner-only like the backups it describes."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise

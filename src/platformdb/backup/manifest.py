"""The manifest every backup carries, and the checks made before a restore.

A backup is one folder named ``<store>-<UTC time>`` holding the store's files
and ``manifest.json``: tool versions, schema version (from the ledger), per
table (or per key type) row counts and content checksums, and the SHA-256 and
size of every file. A restore reads the manifest and re-hashes every file
before it touches the target, so a corrupted or truncated backup is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platformdb import __version__
from platformdb.errors import ValidationError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class TableState:
    """What a table held at backup time."""

    rows: int
    checksum: str


@dataclass
class Manifest:
    store: str
    created_at: str
    platformdb_version: str
    tools: dict[str, str]
    schema_version: int | None
    migrations: list[str]
    tables: dict[str, TableState]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def write(self, folder: Path) -> Path:
        self.files = {
            str(path.relative_to(folder)): {"sha256": file_sha256(path),
                                            "bytes": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST
        }
        target = folder / MANIFEST
        write_private(target, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        private_tree(folder)  # whatever the store's tools wrote, under whatever umask
        return target


def new_manifest(store: str, **values: Any) -> Manifest:
    return Manifest(store=store, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    platformdb_version=__version__, **values)


def backup_folder(out_dir: Path, store: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return private_dir(out_dir / f"{store}-{stamp}")


# Backups are owner-only, whatever the umask: folders 0700, files 0600 (tenant data,
# password hashes and the schema's secrets are in them).
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_dir(folder: Path, *, exist_ok: bool = False) -> Path:
    """Make ``folder`` (0700); a parent it needs is made 0700 too."""
    if not folder.parent.exists():
        private_dir(folder.parent, exist_ok=True)
    try:
        folder.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        if not exist_ok:
            raise
        return folder
    os.chmod(folder, FOLDER_MODE)  # mkdir's mode is masked by the umask; this is not
    return folder


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, a file only its owner can read (0600 from the start)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), FILE_MODE)  # an existing file keeps its mode otherwise
        out.write(text)


def private_tree(folder: Path) -> None:
    """``folder`` and everything in it owner-only: folders 0700, files 0600."""
    os.chmod(folder, FOLDER_MODE)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), FOLDER_MODE)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path, store: str) -> Manifest:
    """The manifest of ``folder``, after checking every file against it."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ValidationError(f"{folder} is not a backup folder")
    if not path.is_file():
        raise ValidationError(f"{folder} has no {MANIFEST}; not a platformdb backup")
    try:
        raw = json.loads(path.read_text())
        tables = {name: TableState(**state) for name, state in raw.pop("tables").items()}
        manifest = Manifest(tables=tables, **raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"{path} is malformed: {exc}") from exc
    if manifest.store != store:
        raise ValidationError(f"{folder} is a {manifest.store} backup, not {store}")
    if manifest.format_version > FORMAT_VERSION:
        raise ValidationError(f"{folder} was written by a newer platformdb; upgrade to restore it")
    for name, expected in manifest.files.items():
        file = folder / name
        if not file.is_file():
            raise ValidationError(f"backup file {name} is missing from {folder}; "
                                  "refusing to restore")
        if file.stat().st_size != expected["bytes"] or file_sha256(file) != expected["sha256"]:
            raise ValidationError(
                f"backup file {name} does not match its manifest checksum (corrupted or "
                "truncated); refusing to restore")
    return manifest

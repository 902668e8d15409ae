"""The tenant archive: one uncompressed tar with a manifest, checked before anything is read.

Layout (docs/TENANTS.md#the-archive has the full specification)::

    manifest.json                 format, versions, org, counts, sha256 of every file
    postgresql/<table>.csv        COPY ... TO STDOUT (FORMAT csv, HEADER true)
    clickhouse/<table>.native     SELECT * ... FORMAT Native
    redis/jobs.jsonl              one queued job per line (ready, delayed, running, dead)

:func:`write` packs a folder into ``<path>`` atomically (a partial file is renamed
only when whole) and refuses an existing path; :func:`opened` unpacks an archive
into a private scratch folder and yields it only after the manifest's format,
and every file's size and checksum, have been verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from platformdb import __version__
from platformdb.backup.manifest import file_sha256
from platformdb.errors import ValidationError

MANIFEST = "manifest.json"
FORMAT = "platformdb-tenant-archive"
FORMAT_VERSION = 1
STORES = ("postgresql", "clickhouse", "redis")


@dataclass
class Manifest:
    """What an archive holds; ``files`` maps each path to its rows, bytes and sha256."""

    org: dict[str, str]
    schema: dict[str, int]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    platformdb_version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def add(self, folder: Path, name: str, rows: int) -> None:
        """Record ``folder/name`` (written already) with its row count and checksum (the one
        :class:`HashingWriter` took while writing it, else read back)."""
        path = folder / name
        known = _WRITTEN.pop(path, None)
        size = path.stat().st_size
        if known is None or known[1] != size:
            known = (file_sha256(path), size)
        self.files[name] = {"rows": rows, "bytes": size, "sha256": known[0]}

    def rows(self, prefix: str) -> dict[str, int]:
        """``{stem: rows}`` of the files under ``prefix/`` (``postgresql``...)."""
        found = {}
        for name, entry in self.files.items():
            top, _, rest = name.partition("/")
            if top == prefix:
                found[rest.split(".", 1)[0]] = int(entry["rows"])
        return found

    def to_json(self) -> str:
        return json.dumps({
            "format": self.format, "format_version": self.format_version,
            "created_at": self.created_at, "platformdb_version": self.platformdb_version,
            "org": self.org, "schema": self.schema, "stores": self.stores, "files": self.files,
        }, indent=2, sort_keys=True) + "\n"


_WRITTEN: dict[Path, tuple[str, int]] = {}
"""sha256 and size of files a :class:`HashingWriter` wrote, until the manifest takes them."""


class HashingWriter:
    """A file opened for writing that hashes what goes through it (no second read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb")  # noqa: SIM115 -- closed by __exit__
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        if exc[0] is None:
            _WRITTEN[self.path] = (self.digest.hexdigest(), self.size)


def forget(folder: Path) -> None:
    """Drop what :class:`HashingWriter` recorded under ``folder`` (an export that failed)."""
    for path in [p for p in _WRITTEN if folder in p.parents]:
        _WRITTEN.pop(path, None)


def refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise ValidationError(f"{path} already exists; choose a new path (an archive is never "
                              "overwritten)")


def scratch_dir(near: Path, prefix: str) -> Path:
    """A private folder beside ``near`` when possible (same disk), else in the temp dir."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=near.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-"))


def write(folder: Path, manifest: Manifest, path: Path) -> Path:
    """``folder``'s files and ``manifest`` as the tar ``path`` (created, never replaced)."""
    refuse_existing(path)
    (folder / MANIFEST).write_text(manifest.to_json())
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)  # our own leftover from an interrupted export
    # owner only: the archive holds password hashes and encrypted credentials
    handle = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        with handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(folder / MANIFEST, arcname=MANIFEST)
            for name in sorted(manifest.files):
                tar.add(folder / name, arcname=name, recursive=False)
            tar.close()
            handle.flush()
            os.fsync(handle.fileno())
        refuse_existing(path)
        os.link(partial, path)  # fails if someone created path meanwhile: never overwrite
    finally:
        partial.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def opened(path: Path) -> Iterator[tuple[Path, Manifest]]:
    """The archive unpacked into a scratch folder and its manifest, every file verified."""
    if not path.is_file():
        raise ValidationError(f"{path} does not exist or is not a file")
    scratch = scratch_dir(path, "platformdb-tenant")
    try:
        _unpack(path, scratch)
        manifest = _manifest(path, scratch)
        _verify(path, scratch, manifest)
        yield scratch, manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(path: Path, into: Path) -> None:
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar.getmembers():
                if not member.isfile() or not _safe(member.name):
                    raise ValidationError(f"{path} holds an unexpected entry {member.name!r}; "
                                          "not a platformdb tenant archive")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise ValidationError(f"{path} is not a readable tar archive (truncated or corrupted: "
                              f"{exc}); nothing was changed") from exc


def _safe(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts


def _manifest(path: Path, folder: Path) -> Manifest:
    file = folder / MANIFEST
    if not file.is_file():
        raise ValidationError(f"{path} has no {MANIFEST}; not a platformdb tenant archive")
    try:
        raw = json.loads(file.read_text())
        if raw.get("format") != FORMAT:
            raise ValidationError(f"{path} is not a platformdb tenant archive "
                                  f"(format {raw.get('format')!r})")
        manifest = Manifest(org=dict(raw["org"]), schema={k: int(v) for k, v in
                                                          raw["schema"].items()},
                            files=dict(raw["files"]), stores=dict(raw.get("stores", {})),
                            created_at=str(raw["created_at"]),
                            platformdb_version=str(raw.get("platformdb_version", "")),
                            format_version=int(raw["format_version"]))
        str(manifest.org["id"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationError(f"{path}: {MANIFEST} is malformed ({exc}); refusing to import") \
            from exc
    if manifest.format_version > FORMAT_VERSION:
        raise ValidationError(
            f"{path} has tenant archive format {manifest.format_version}, newer than this "
            f"platformdb reads ({FORMAT_VERSION}); upgrade platformdb to import it")
    return manifest


def _verify(path: Path, folder: Path, manifest: Manifest) -> None:
    listed = set(manifest.files) | {MANIFEST}
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and str(p.relative_to(folder)) not in listed)
    if extra:
        raise ValidationError(f"{path} holds {extra[0]}, which its manifest does not list; "
                              "refusing to import")
    for name, entry in sorted(manifest.files.items()):
        if not _safe(name) or name.split("/", 1)[0] not in STORES:
            raise ValidationError(f"{path}: the manifest names an unexpected file {name!r}")
        file = folder / name
        if not file.is_file():
            raise ValidationError(f"{path} is missing {name}, which its manifest lists; "
                                  "refusing to import")
        if file.stat().st_size != int(entry["bytes"]) or file_sha256(file) != entry["sha256"]:
            raise ValidationError(f"{path}: {name} does not match its manifest checksum "
                                  "(corrupted or truncated); refusing to import")

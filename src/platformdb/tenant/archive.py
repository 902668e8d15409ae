"""The tenant archive: one uncompressed tar with a manifest, checked before anything is read.

Layout (docs/TENANTS.md#the-archive has the full specification)::

    manifest.json                 format, versions, org, counts, sha256 of every file
    manifest.sig                  the deployment's Ed25519 signature of manifest.json
    postgresql/<table>.csv        COPY ... TO STDOUT (FORMAT csv, HEADER true)
    clickhouse/<table>.native     SELECT * ... FORMAT Native
    redis/jobs.jsonl              one queued job per line (ready, delayed, running, dead)

:func:`write` signs the manifest (:mod:`.keys`) and packs a folder into ``<path>``
atomically (a partial file is renamed only when whole), refusing an existing path.
:func:`opened` reads the tar's headers only (every entry a plain, non-sparse file
within the :class:`Limits`), then the manifest and its signature, verifies the
signature against the trusted keys BEFORE reading any other member, and only then
unpacks the files into a private scratch folder, each checked against its size and
sha256 as it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from platformdb import __version__
from platformdb.backup.manifest import file_sha256
from platformdb.errors import Hint, ValidationError
from platformdb.tenant import keys

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = "platformdb-tenant-archive"
FORMAT_VERSION = 2
"""2: signed (``manifest.sig``); 1 was unsigned and is refused."""
MANIFEST_MAX = 16 << 20
"""The largest manifest or signature read (bytes)."""
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


def write(folder: Path, manifest: Manifest, path: Path, ring: keys.KeyRing) -> Path:
    """``folder``'s files and ``manifest``, signed with ``ring``'s current key, as the tar
    ``path`` (created, never replaced)."""
    refuse_existing(path)
    text = manifest.to_json().encode()
    key, public = ring.current()
    (folder / MANIFEST).write_bytes(text)
    (folder / SIGNATURE).write_bytes(keys.sign(key, public, text))
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)  # our own leftover from an interrupted export
    # owner only: the archive holds password hashes and encrypted credentials
    handle = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        with handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(folder / MANIFEST, arcname=MANIFEST)  # first: read before the rest
            tar.add(folder / SIGNATURE, arcname=SIGNATURE)
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




# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Limits:
    """How big an archive an import unpacks (``--max-size`` and kin raise them)."""

    max_size: int = 16 << 30
    """Total unpacked bytes."""
    max_member_size: int = 8 << 30
    """Bytes of one file."""
    max_members: int = 1000
    """Entries in the tar."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"16GiB"``, ``"500M"``, ``"1024"`` as bytes (K, M, G, T are powers of 1024)."""
    found = _SIZE.match(text)
    if found is None:
        raise ValidationError(f"{text!r} is not a size (e.g. 500M, 16G, 1T or bytes)")
    scale = 1 << (10 * " kmgt".index(found.group(2).lower() or " "))
    return int(float(found.group(1)) * scale)


def _human(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} B"


@contextlib.contextmanager
def opened(path: Path, trusted: Iterable[keys.PublicKey], limits: Limits | None = None
           ) -> Iterator[tuple[Path, Manifest, keys.PublicKey]]:
    """The archive unpacked into a scratch folder, its manifest and the key that signed
    it: the signature is verified before any member but the manifest is read, and every
    file is checked against the manifest as it is unpacked."""
    limits = limits or Limits()
    if not path.is_file():
        raise ValidationError(f"{path} does not exist or is not a file")
    try:
        with tarfile.open(path, "r:") as tar:
            members = _members(path, tar, limits)
            text = _read_small(path, tar, members, MANIFEST, "has no manifest.json; not a "
                               "platformdb tenant archive")
            document = _read_small(path, tar, members, SIGNATURE,
                                   "is not signed (no manifest.sig); refusing to import it "
                                   "(archives of platformdb before format 2 were unsigned: "
                                   "export the org again)")
            signer = keys.verify(str(path), text, document, trusted)
            manifest = _manifest(path, text)
            _check_listing(path, manifest, members)
            scratch = scratch_dir(path, "platformdb-tenant")
            try:
                _room(path, scratch, manifest)
                _unpack(path, tar, members, manifest, scratch)
                yield scratch, manifest, signer
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except (tarfile.TarError, EOFError) as exc:
        raise ValidationError(f"{path} is not a readable tar archive (truncated or corrupted: "
                              f"{exc}); nothing was changed") from exc


def _too_big(path: Path, what: str, flag: str) -> ValidationError:
    return ValidationError(f"{path} {what}; refusing to import it",
                           hint=Hint(flag=flag, does="to raise the limit if you trust it"))


def _members(path: Path, tar: tarfile.TarFile, limits: Limits) -> dict[str, tarfile.TarInfo]:
    """Every entry's header (no data read), checked: plain files with safe, unique names,
    not sparse, within the limits, and their data present in the file."""
    found: dict[str, tarfile.TarInfo] = {}
    total = 0
    physical = path.stat().st_size
    while (member := tar.next()) is not None:
        if len(found) >= limits.max_members:
            raise _too_big(path, f"holds more than {limits.max_members} entries",
                           "--max-members")
        if member.issparse():
            raise ValidationError(f"{path} holds a sparse entry {member.name!r}; not a "
                                  "platformdb tenant archive (refusing to import it)")
        if not member.isreg() or not _safe(member.name) or member.name in found:
            raise ValidationError(f"{path} holds an unexpected entry {member.name!r}; "
                                  "not a platformdb tenant archive")
        if member.size > limits.max_member_size and member.name not in (MANIFEST, SIGNATURE):
            raise _too_big(path, f"holds {member.name}, {_human(member.size)} unpacked "
                           f"(limit {_human(limits.max_member_size)})", "--max-member-size")
        total += member.size
        if total > limits.max_size:
            raise _too_big(path, f"unpacks to more than {_human(limits.max_size)}",
                           "--max-size")
        if member.offset_data + member.size > physical:
            raise ValidationError(f"{path}: {member.name} claims {_human(member.size)}, "
                                  "past the end of the file (truncated or forged); nothing "
                                  "was changed")
        found[member.name] = member
    return found


def _read_small(path: Path, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
                name: str, missing: str) -> bytes:
    member = members.get(name)
    if member is None:
        raise ValidationError(f"{path} {missing}")
    if member.size > MANIFEST_MAX:
        raise ValidationError(f"{path}: {name} is {_human(member.size)}, more than a "
                              f"manifest can be ({_human(MANIFEST_MAX)}); refusing to import")
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file
    with handle:
        return handle.read()


def _manifest(path: Path, text: bytes) -> Manifest:
    try:
        raw = json.loads(text)
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
        for entry in manifest.files.values():
            int(entry["bytes"]), int(entry["rows"]), str(entry["sha256"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationError(f"{path}: {MANIFEST} is malformed ({exc}); refusing to import") \
            from exc
    if manifest.format_version > FORMAT_VERSION:
        raise ValidationError(
            f"{path} has tenant archive format {manifest.format_version}, newer than this "
            f"platformdb reads ({FORMAT_VERSION}); upgrade platformdb to import it")
    return manifest


def _check_listing(path: Path, manifest: Manifest, members: dict[str, tarfile.TarInfo]) -> None:
    """The tar holds exactly the manifest's files, each of the size the manifest says."""
    for name in manifest.files:
        if not _safe(name) or name.split("/", 1)[0] not in STORES or name.count("/") != 1:
            raise ValidationError(f"{path}: the manifest names an unexpected file {name!r}")
        if name not in members:
            raise ValidationError(f"{path} is missing {name}, which its manifest lists; "
                                  "refusing to import")
        if members[name].size != int(manifest.files[name]["bytes"]):
            raise ValidationError(f"{path}: {name} does not match its manifest size "
                                  "(corrupted or truncated); refusing to import")
    extra = sorted(set(members) - set(manifest.files) - {MANIFEST, SIGNATURE})
    if extra:
        raise ValidationError(f"{path} holds {extra[0]}, which its manifest does not list; "
                              "refusing to import")


def _room(path: Path, scratch: Path, manifest: Manifest) -> None:
    needed = sum(int(entry["bytes"]) for entry in manifest.files.values())
    free = shutil.disk_usage(scratch).free
    if needed > free:
        raise ValidationError(f"{path} unpacks to {_human(needed)} but {scratch.parent} has "
                              f"{_human(free)} free; free some space (nothing was changed)")


def _unpack(path: Path, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
            manifest: Manifest, into: Path) -> None:
    """The manifest's files into ``into`` (owner-only), each hashed as it is written."""
    for name, entry in sorted(manifest.files.items(), key=lambda item: members[item[0]].offset):
        target = into / name
        target.parent.mkdir(mode=0o700, exist_ok=True)
        source = tar.extractfile(members[name])
        assert source is not None  # a regular file
        digest = hashlib.sha256()
        with source, os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                               "wb") as out:
            while block := source.read(1 << 20):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != entry["sha256"]:
            raise ValidationError(f"{path}: {name} does not match its manifest checksum "
                                  "(corrupted or truncated); refusing to import")


def _safe(name: str) -> bool:
    """A relative path in canonical form (no ``..``, ``.``, ``//`` or trailing ``/``)."""
    parts = PurePosixPath(name).parts
    return (bool(parts) and not name.startswith("/") and ".." not in parts
            and str(PurePosixPath(name)) == name)

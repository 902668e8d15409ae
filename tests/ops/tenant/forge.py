"""Editing a tenant archive the way an attacker would: change members, recompute every
checksum in the manifest, and sign it again with a key of one's own."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from platformdb.tenant import archive, keys


def unpack(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()}


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files[archive.MANIFEST])  # type: ignore[no-any-return]


def pack(files: dict[str, bytes], path: Path, *, ring: keys.KeyRing | None,
         manifest: dict[str, Any] | None = None, rehash: bool = True) -> Path:
    """``files`` as a tar at ``path``: the manifest's sizes and sha256 recomputed (unless
    ``rehash`` is off), signed by ``ring`` (None: the signature is left as it is)."""
    files = dict(files)
    raw = manifest if manifest is not None else manifest_of(files)
    if rehash:
        for name, entry in raw["files"].items():
            if name in files:
                entry["bytes"] = len(files[name])
                entry["sha256"] = hashlib.sha256(files[name]).hexdigest()
    text = (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode()
    files[archive.MANIFEST] = text
    if ring is not None:
        key, public = ring.current()
        files[archive.SIGNATURE] = keys.sign(key, public, text)
    order = [archive.MANIFEST, archive.SIGNATURE, *sorted(
        n for n in files if n not in (archive.MANIFEST, archive.SIGNATURE))]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in order:
            if name in files:
                info = tarfile.TarInfo(name)
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
    return path


def retarget_csv_row(blob: bytes, source: str, target: str, *, new_id: str) -> bytes:
    """``blob`` (a COPY CSV) with its first row copied, moved to org ``target`` under the
    id ``new_id``: the "rows of another org added, ids retargeted" edit."""
    header, first = blob.split(b"\n")[:2]
    columns = header.decode().split(",")
    cells = first.decode().split(",")
    cells[columns.index("id")] = new_id
    row = ",".join(cells).replace(source, target)
    return blob + row.encode() + b"\n"

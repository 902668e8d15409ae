"""Archive bounds: total unpacked size, size of one file, number of entries, sparse and
forged sizes, refused before anything is unpacked; the limits can be raised."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from platformdb.errors import ValidationError
from platformdb.tenant import archive, keys
from tests.ops.tenant.forge import pack


def manifest(files: dict[str, bytes]) -> dict[str, object]:
    return {"format": archive.FORMAT, "format_version": archive.FORMAT_VERSION,
            "created_at": "2026-12-07T00:00:00+00:00", "platformdb_version": "test",
            "org": {"id": "6f1c0000-0000-4000-8000-000000000001", "slug": "s", "name": "n"},
            "schema": {}, "stores": {},
            "files": {name: {"rows": 1, "bytes": 0, "sha256": ""} for name in files}}


@pytest.fixture
def ring(tmp_path: Path) -> keys.KeyRing:
    return keys.KeyRing(tmp_path / "keys")


def signed(tmp_path: Path, ring: keys.KeyRing, files: dict[str, bytes]) -> Path:
    return pack(files, tmp_path / "a.tar", ring=ring, manifest=manifest(files))


def opens(path: Path, ring: keys.KeyRing, limits: archive.Limits | None = None) -> int:
    with archive.opened(path, [ring.current()[1]], limits) as (folder, found, _):
        return sum(1 for p in folder.rglob("*") if p.is_file()) + 0 * len(found.files)


FILES = {f"postgresql/t{i}.csv": b"x" * 100 for i in range(4)}


def test_a_genuine_archive_within_the_limits_opens(tmp_path: Path, ring: keys.KeyRing) -> None:
    assert opens(signed(tmp_path, ring, FILES), ring) == 4


@pytest.mark.parametrize(("limits", "message", "flag"), [
    (archive.Limits(max_members=5), "more than 5 entries", "--max-members"),
    (archive.Limits(max_member_size=99), r"postgresql/t0\.csv, 100 B unpacked",
     "--max-member-size"),
    (archive.Limits(max_size=900), "unpacks to more than 900 B", "--max-size"),
])
def test_an_archive_over_a_limit_is_refused_in_one_line_naming_the_flag(
        tmp_path: Path, ring: keys.KeyRing, limits: archive.Limits, message: str,
        flag: str) -> None:
    path = signed(tmp_path, ring, FILES)
    with pytest.raises(ValidationError, match=message) as caught:
        opens(path, ring, limits)
    assert caught.value.hint is not None and caught.value.hint.flag == flag
    assert "\n" not in str(caught.value)
    # raised, the same archive opens
    assert opens(path, ring, archive.Limits(max_size=1 << 20, max_member_size=100,
                                            max_members=6)) == 4


def _header(info: tarfile.TarInfo, fmt: int, patch: dict[int, bytes]) -> bytes:
    """A tar header with raw bytes patched in and its checksum recomputed."""
    buf = bytearray(info.tobuf(fmt))
    for offset, value in patch.items():
        buf[offset:offset + len(value)] = value
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf[:512])
    return bytes(buf)


def test_a_sparse_member_is_refused(tmp_path: Path) -> None:
    """1.8 MB of tar that would unpack a 4 GiB file of holes."""
    info = tarfile.TarInfo("postgresql/users.csv")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 0
    realsize = b"%011o\0" % (4 << 30)
    path = tmp_path / "sparse.tar"
    path.write_bytes(_header(info, tarfile.GNU_FORMAT, {483: realsize}) + b"\0" * 1024)
    with pytest.raises(ValidationError, match="sparse entry"), archive.opened(path, []):
        pass


def test_a_size_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("postgresql/users.csv")
    info.size = 4 << 30
    path = tmp_path / "forged.tar"
    path.write_bytes(_header(info, tarfile.USTAR_FORMAT, {}) + b"a" * 512 + b"\0" * 1024)
    with pytest.raises(ValidationError, match="past the end of the file"), \
            archive.opened(path, [], archive.Limits(max_size=8 << 30)):
        pass


def test_links_and_odd_names_are_refused(tmp_path: Path) -> None:
    for name, kind in (("postgresql/x.csv", tarfile.SYMTYPE), ("postgresql/../x.csv", None),
                       ("postgresql//x.csv", None), ("/etc/x", None)):
        info = tarfile.TarInfo(name)
        if kind is not None:
            info.type, info.linkname = kind, "/etc/passwd"
        path = tmp_path / "odd.tar"
        path.write_bytes(_header(info, tarfile.PAX_FORMAT, {}) + b"\0" * 1024)
        with pytest.raises(ValidationError, match="unexpected entry"), \
                archive.opened(path, []):
            pass


@pytest.mark.parametrize(("text", "size"), [
    ("1024", 1024), ("500M", 500 << 20), ("16G", 16 << 30), ("16GiB", 16 << 30),
    ("1.5k", 1536), ("2 TB", 2 << 40),
])
def test_sizes_read_as_powers_of_1024(text: str, size: int) -> None:
    assert archive.parse_size(text) == size


def test_a_size_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a size"):
        archive.parse_size("lots")

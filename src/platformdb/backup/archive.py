"""Backups as single files: ``backup --archive`` writes ``<folder>.tar``; restores open them.

A platformdb archive is an uncompressed tar of one backup folder (or one set):
the folder's files with their manifest, nothing else, so a restore from it makes
every check a folder restore makes (the manifest's checksums first). The data
inside is compressed already (pg_dump's custom format, zstd Native files).

:func:`opened` gives a restore what it can read: a folder as is, an archive
unpacked into a private scratch folder (removed afterwards), or a file that is
not a platformdb archive as is (a ``pg_dump`` file, which PostgreSQL's restore
reads). ClickHouse's own ``BACKUP ... TO File('x.tar')`` archives are recognised
and refused with what to do instead: they restore with ClickHouse's ``RESTORE``
on the server that can read the file (docs/OPERATIONS.md#restoring-files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from zlib import error as zlib_error

from platformdb.backup.manifest import FILE_MODE, MANIFEST, private_tree
from platformdb.errors import Hint, ValidationError

SUFFIX = ".tar"


def pack(folder: Path) -> Path:
    """``folder`` as ``<folder>.tar`` beside it; the folder is removed once the tar is whole."""
    target = folder.with_name(folder.name + SUFFIX)
    partial = folder.with_name(f".{folder.name}{SUFFIX}.partial")
    try:
        private_tree(folder)  # the members keep owner-only modes when unpacked
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # owner-only, whatever the umask
            with tarfile.open(fileobj=handle, mode="w") as tar:
                tar.add(folder, arcname=folder.name, recursive=False)  # its mode too
                for path in sorted(folder.rglob("*")):
                    tar.add(path, arcname=str(Path(folder.name) / path.relative_to(folder)),
                            recursive=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    shutil.rmtree(folder)
    return target


def is_tar(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def kind(path: Path) -> str:
    """What a tar holds: ``platformdb`` (a backup folder or set), ``clickhouse-native``
    (ClickHouse's own BACKUP archive), ``pg_dump`` (``pg_dump -Ft``) or ``unknown``."""
    with damaged(path), tarfile.open(path) as tar:
        names = tar.getnames()
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and f"{next(iter(tops))}/{MANIFEST}" in names:
        return "platformdb"
    if ".backup" in names or any(name.endswith("/.backup") for name in names):
        return "clickhouse-native"
    if "toc.dat" in names:
        return "pg_dump"
    return "unknown"


def has_manifest(path: Path) -> bool:
    """Whether a restore from ``path`` can compare with a manifest (folders, platformdb
    archives), as opposed to a ``pg_dump`` file."""
    return path.is_dir() or (is_tar(path) and kind(path) == "platformdb")


@contextlib.contextmanager
def opened(path: Path) -> Iterator[Path]:
    """What a restore reads at ``path``: a folder, an archive's unpacked folder, or a file."""
    if not path.exists():
        raise ValidationError(f"{path} does not exist")
    if not is_tar(path):
        yield path
        return
    found = kind(path)
    if found == "clickhouse-native":
        raise ValidationError(
            f"{path} is a ClickHouse BACKUP archive, not a platformdb one; restore it with "
            "ClickHouse itself on a server whose backups.allowed_path holds it (RESTORE "
            "DATABASE platform AS platform_restored FROM File('...')), or restore a platformdb "
            "backup", hint=Hint(command="platformdb backup clickhouse --archive",
                                does="to write one"))
    if found == "pg_dump":
        yield path  # pg_restore reads tar-format dumps itself
        return
    if found != "platformdb":
        raise ValidationError(f"{path} is a tar file but holds no platformdb backup "
                              "(one folder with a manifest.json)")
    scratch = _scratch_dir(path)
    try:
        with damaged(path), tarfile.open(path) as tar:
            tar.extractall(scratch, filter="data")  # no links out, no absolute paths
        private_tree(Path(scratch))  # an older archive's members may be world-readable
        [folder] = [child for child in Path(scratch).iterdir() if child.is_dir()]
        yield folder
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def damaged(path: Path) -> Iterator[None]:
    """A tar that ends early or is corrupt, said as such (tarfile's ``ReadError:
    unexpected end of data`` names neither the file nor what to do)."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib_error) as exc:
        raise ValidationError(f"{path} is truncated or damaged ({exc or type(exc).__name__}); "
                              "nothing was read from it: use a complete copy") from exc


def _scratch_dir(archive: Path) -> str:
    """A private folder to unpack into: beside the archive when possible (same disk)."""
    try:
        return tempfile.mkdtemp(prefix=".platformdb-unpacked-", dir=archive.parent)
    except OSError:
        return tempfile.mkdtemp(prefix="platformdb-unpacked-")

"""Backups and restores are safe by construction: no password in any child's arguments or
environment, a plain dump gets no shell, children die with their parent, and every backup
file and folder is owner-only whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from platformdb.backup import archive
from platformdb.backup.state import STATE_FILE
from platformdb.errors import ValidationError
from platformdb.ops import backup as ops_backup
from platformdb.stores.postgres import backup as pg_backup
from platformdb.types import Endpoints
from tests.conftest import drop_database, fresh_name, with_database
from tests.ops.test_backup_sets import redis_pair, source  # noqa: F401 - fixtures
from tests.stores.postgres.test_backup import fill

REPO = Path(__file__).resolve().parents[3]


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@contextmanager
def watching_children() -> Iterator[dict[int, tuple[bytes, bytes]]]:
    """Every child process of this one seen meanwhile: pid -> (cmdline, environ), read
    from /proc while it runs (what any local user could read: ``ps``, ``/proc``)."""
    seen: dict[int, tuple[bytes, bytes]] = {}
    done = threading.Event()

    def scan() -> None:
        while not done.is_set():
            for pid in children_of(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                if cmdline:
                    seen[pid] = (cmdline, environ)
            time.sleep(0.002)

    thread = threading.Thread(target=scan, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
                          ).geturl()


@pytest.fixture
def target(pg_admin_url: str) -> Iterator[str]:
    name = fresh_name("safe")
    yield with_database(pg_admin_url, name)
    drop_database(pg_admin_url, name)


@pytest.mark.slow
def test_no_password_in_the_arguments_or_environment_of_any_child(migrated_url: str,
                                                                 target: str,
                                                                 tmp_path: Path) -> None:
    fill(migrated_url)
    if not urlsplit(migrated_url).password:  # a trust-auth server: a password it ignores
        migrated_url, target = (with_password(url, uuid.uuid4().hex) for url in (migrated_url,
                                                                                 target))
    password = unquote(urlsplit(migrated_url).password or "")
    assert password
    passfiles = set(Path(tempfile.gettempdir()).glob("platformdb-psql-*"))
    with watching_children() as seen:
        folder = pg_backup.backup(migrated_url, tmp_path)
        pg_backup.restore(folder, target, jobs=2)
        dump = tmp_path / "plain.sql"
        pg_backup.run_tool([pg_backup.pg_tool("pg_dump", migrated_url), "-f", str(dump),
                            "-d", migrated_url], "pg_dump")
        pg_backup.restore(dump, target, force=True)
    programs = {Path(cmdline.split(b"\0")[0].decode()).name for cmdline, _ in seen.values()}
    assert {"pg_dump", "pg_restore", "psql"} <= programs, programs
    for cmdline, environ in seen.values():
        assert password.encode() not in cmdline, cmdline
        assert password.encode() not in environ
        assert b"PGPASSWORD=" not in environ
    # the passfiles went with their programs
    assert set(Path(tempfile.gettempdir()).glob("platformdb-psql-*")) <= passfiles


PLAIN_DUMP = """--
-- PostgreSQL database dump
--

SET statement_timeout = 0;
CREATE TABLE public.note (id integer);
{evil}
COPY public.note (id) FROM stdin;
1
\\.

--
-- PostgreSQL database dump complete
--

"""


@pytest.mark.parametrize("evil", [
    "\\! touch {marker}",
    "SELECT 1; \\! touch {marker}",
    "/* a comment */ \\setenv X 1\n\\! touch {marker}",
    "\\o |touch {marker}",
    "\\i {marker}",
])
def test_a_plain_dump_with_a_shell_command_runs_nothing(evil: str, migrated_url: str,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    dump = tmp_path / "evil.sql"
    dump.write_text(PLAIN_DUMP.format(evil=evil.format(marker=marker)))
    fill(migrated_url)
    with psycopg.connect(migrated_url) as conn:
        before = pg_backup.table_states(conn)
    with pytest.raises(ValidationError) as failure:
        pg_backup.restore(dump, migrated_url, force=True)
    message = str(failure.value)
    assert "\n" not in message and "pg_dump never writes" in message and "line" in message
    assert not marker.exists()
    with psycopg.connect(migrated_url) as conn:
        assert pg_backup.table_states(conn) == before


def test_meta_commands_are_found_as_psql_finds_them() -> None:
    scanner = pg_backup.MetaScanner()
    lines = [
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$ SELECT '\\! no' $_$;",  # body
        "SELECT 'a\\b', \"x\\y\";",  # strings and identifiers
        "-- a comment \\! no",
        "/* a block",
        "\\! still the comment */ SELECT 1;",
        "COPY t (a) FROM stdin;",
        "\\!data",  # COPY data is data
        "\\.",
        "\\restrict abc",
        "SELECT $$",
        "\\! in a dollar body",
        "$$; \\! yes",
    ]
    found = [scanner.line(line) for line in lines]
    assert found == [None, None, None, None, None, None, None, None, "restrict", None, None, "!"]


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom platformdb.stores.postgres.backup import spawn"
         "\nchild = spawn(['sleep', '60'])\nprint(child.pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()  # kill -9: no clean-up code runs in the parent
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_owner_only(root: Path) -> None:
    paths = [root, *root.rglob("*")]
    assert len(paths) > 1
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.slow
def test_a_single_store_backup_and_its_archive_are_owner_only(migrated_url: str,
                                                              tmp_path: Path) -> None:
    with umask(0o022):
        folder = pg_backup.backup(migrated_url, tmp_path / "backups", directory_format=True,
                                  jobs=2)
        assert_owner_only(folder)
        packed = archive.pack(folder)
    assert stat.S_IMODE(packed.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700
    with tarfile.open(packed) as tar:
        for member in tar.getmembers():
            assert member.mode == (0o700 if member.isdir() else 0o600), member.name
    with umask(0o022), archive.opened(packed) as unpacked:
        assert stat.S_IMODE(unpacked.parent.stat().st_mode) == 0o700
        assert_owner_only(unpacked)


@pytest.mark.slow
def test_a_backup_set_is_owner_only(source: Endpoints, tmp_path: Path) -> None:  # noqa: F811
    with umask(0o022):
        (folder,) = ops_backup.backup(source, None, tmp_path / "backups")
    assert folder.name.startswith("set-")
    assert_owner_only(folder)
    assert {child.name.split("-", 1)[0] for child in folder.iterdir() if child.is_dir()} == {
        "postgresql", "clickhouse", "redis"}
    assert stat.S_IMODE((tmp_path / "backups" / STATE_FILE).stat().st_mode) == 0o600

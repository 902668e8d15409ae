"""The one way into ClickHouse: clickhouse-connect's ``Client``, on a server or on chDB.

:func:`connect` takes a URL and yields clickhouse-connect's own
:class:`~clickhouse_connect.driver.Client`, the same class for both targets:

- ``http(s)://user:password@host:8123/database`` — a ClickHouse server;
- ``chdb:///path?database=name`` — chDB, ClickHouse inside this process
  (clickhouse-connect's chDB backend, chdb >= 4.4).

Queries take ClickHouse's server-side parameters (``{org:UUID}``) on both;
nothing is formatted into SQL text. The database (``platform`` by default)
is created when it is missing.

chDB opens one path per process, and one process at a time: :func:`connect`
holds an exclusive lock file beside the path (``<path>.lock``) while the
process has the path open, so a second process waits for the first (bounded,
and it says that it waits) instead of failing inside the engine.

Errors leave as :class:`ClickHouseError` (the engine's message on one line,
its code in ``code``) or :class:`~platformdb.errors.StoreUnavailable`, with
clickhouse-connect's exception chained as ``__cause__``.

Importing this package loads clickhouse-connect only: chdb, pyarrow, numpy
and pandas are imported by the code paths that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from clickhouse_connect.driver import exceptions as cc_errors

from platformdb.errors import ConfigError, PlatformDBError, StoreUnavailable
from platformdb.redaction import redact

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

DEFAULT_DATABASE = "platform"
CHDB_WAIT = 300.0
"""Seconds a process waits for another one to close a chDB path."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "CHDB_WAIT",
    "DEFAULT_DATABASE",
    "ClickHouseError",
    "command",
    "connect",
    "quote_identifier",
    "rows",
    "translated",
]

log = logging.getLogger("platformdb.clickhouse")
# clickhouse-connect logs a warning beside every exception it raises; with no logging
# configured Python prints it raw on stderr before our one-line message. A NullHandler
# keeps that quiet by default; an application that configures logging still gets it.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())


class ClickHouseError(PlatformDBError):
    """A statement failed on ClickHouse; ``code`` and ``name`` are ClickHouse's."""

    def __init__(self, message: str, *, code: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


def quote_identifier(name: str) -> str:
    """A database or table name we control, checked and back-quoted."""
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"invalid ClickHouse identifier {name!r}")
    return f"`{name}`"


# ------------------------------------------------------------------ errors


_ENGINE_MESSAGE = re.compile(r"(?:Code: (?P<code>\d+)\. )?DB::Exception: (?P<text>.*)")
_VERSION_TAIL = re.compile(r"\s*\(version [^)]*\)\.?\s*$")
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<text>[^\"')\]]+)")


def one_line(exc: BaseException) -> str:
    """The engine's message of ``exc`` on one line, without driver decoration."""
    text = str(exc)
    for line in text.splitlines():
        match = _ENGINE_MESSAGE.search(line)
        if match:
            return _VERSION_TAIL.sub("", match["text"]).strip()[:500]
    errno = _ERRNO.search(text)
    if errno:
        return errno["text"].strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return type(exc).__name__


def _is_transport(exc: cc_errors.Error) -> bool:
    """Connection problems (no engine answer) as opposed to a statement's error."""
    return (isinstance(exc, cc_errors.OperationalError)
            and not isinstance(exc, cc_errors.StreamFailureError) and exc.code is None)


@contextlib.contextmanager
def translated(target: str | None = None) -> Iterator[None]:
    """Turn clickhouse-connect's exceptions raised inside into platformdb's."""
    try:
        yield
    except cc_errors.Error as exc:
        if _is_transport(exc):
            where = f" at {redact(target)}" if target else ""
            raise StoreUnavailable(f"cannot reach ClickHouse{where}: {one_line(exc)}") from exc
        raise ClickHouseError(one_line(exc), code=exc.code, name=exc.name) from exc


def rows(client: Client, sql: str, parameters: Mapping[str, Any] | None = None,
         settings: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """The result rows of ``sql`` (``{name:Type}`` parameters), errors translated."""
    with translated():
        result = client.query(sql, parameters=dict(parameters) if parameters else None,
                              settings=dict(settings) if settings else None)
    return [tuple(row) for row in result.result_rows]


def command(client: Client, sql: str, parameters: Mapping[str, Any] | None = None,
            settings: Mapping[str, Any] | None = None) -> None:
    """Run a statement without a result, errors translated."""
    with translated():
        client.command(sql, parameters=dict(parameters) if parameters else None,
                       settings=dict(settings) if settings else None)


# ------------------------------------------------------------------ connect


@dataclass(frozen=True)
class Target:
    """Where a URL points: a chDB folder or a server DSN, and the database."""

    url: str
    database: str
    chdb_path: Path | None = None
    dsn: str | None = None


@contextlib.contextmanager
def scratch_database(client: Client, prefix: str) -> Iterator[str]:
    """A database of its own for the duration (``<prefix>_<random>``), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    command(client, "CREATE DATABASE {d:Identifier}", {"d": name})
    try:
        yield name
    finally:
        command(client, "DROP DATABASE IF EXISTS {d:Identifier} SYNC", {"d": name})


def parse_url(url: str, database: str | None = None) -> Target:
    """``url`` split into what clickhouse-connect needs and the database to use."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "chdb":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise ConfigError(f"a chDB URL needs an absolute path (chdb:///path), got {url!r}")
        name = database or query.get("database", [DEFAULT_DATABASE])[0]
        quote_identifier(name)
        return Target(url, name, chdb_path=Path(os.path.realpath(path)))
    if parts.scheme in ("http", "https"):
        name = database or unquote(parts.path.strip("/")) or DEFAULT_DATABASE
        quote_identifier(name)
        # the database is chosen after it is known to exist: keep it out of the DSN
        dsn = parts._replace(path="/").geturl()
        return Target(url, name, dsn=dsn)
    raise ConfigError(f"unsupported ClickHouse URL {redact(url)}; "
                      "use http(s)://host:8123/db or chdb:///path")


@contextlib.contextmanager
def connect(url: str, *, database: str | None = None, wait: float = CHDB_WAIT,
            settings: Mapping[str, Any] | None = None,
            create_database: bool = True) -> Iterator[Client]:
    """clickhouse-connect's ``Client`` for ``url``, closed (and chDB released) on exit.

    ``database`` overrides the URL's (``/name`` on a server, ``?database=name``
    on chDB; ``platform`` by default). ``wait`` bounds how long a chDB path
    held by another process is waited for. ``settings`` are ClickHouse
    settings for every statement of this client. Errors raised inside the
    ``with`` block come out as :class:`ClickHouseError` / ``StoreUnavailable``.
    """
    target = parse_url(url, database)
    guard = (_chdb_path_lock(target.chdb_path, wait) if target.chdb_path is not None
             else contextlib.nullcontext())
    with guard:
        client = _open(target, dict(settings or {}))
        try:
            with translated(target.url):
                _use_database(client, target.database, create_database)
                yield client
        finally:
            client.close()


def _open(target: Target, settings: dict[str, Any]) -> Client:
    import clickhouse_connect

    try:
        if target.chdb_path is not None:
            target.chdb_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(target.chdb_path)
            client = clickhouse_connect.get_client(
                interface="chdb", path=str(target.chdb_path), settings=settings)
            _drain_after_failures(client)
            return client
        return clickhouse_connect.get_client(dsn=target.dsn, connect_timeout=10,
                                             settings=settings)
    except ImportError as exc:  # chdb is an optional extra
        raise ConfigError(f"chDB is not installed ({exc.name}); install the embedded extra "
                          "or point PLATFORMDB_CLICKHOUSE_URL at a server") from exc
    except cc_errors.ProgrammingError as exc:
        if target.chdb_path is None:
            raise StoreUnavailable(f"cannot connect to ClickHouse at {redact(target.url)}: "
                                   f"{one_line(exc)}") from exc
        raise StoreUnavailable(
            f"cannot open chDB at {target.chdb_path}: {one_line(exc)}; a process can have one "
            "chDB path open at a time") from exc
    except cc_errors.Error as exc:
        raise StoreUnavailable(f"cannot connect to ClickHouse at {redact(target.url)}: "
                               f"{one_line(exc)}") from exc


def _drain_after_failures(client: Client) -> None:
    """Keep a chDB client usable after a statement fails.

    ``command()`` asks chDB for ``TabSeparatedWithNames``; when the statement fails
    after its header was formatted (a guard ``SELECT throwIf(...)``), chDB keeps the
    header and prepends it to the *next* statement's reply, which then cannot be
    parsed ("Unrecognized ClickHouse type base") or fails with a stray message: the
    undo of a failed migration broke that way. After any failed ``command()`` one
    throwaway ``SELECT 1`` takes whatever was left over.
    """
    original = client.command

    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except cc_errors.Error:
            with contextlib.suppress(cc_errors.Error):
                original("SELECT 1 FORMAT TabSeparated")
            raise

    setattr(client, "command", command)  # noqa: B010 -- this one client instance only


def _private(path: Path) -> None:
    """chDB's data folder holds table data and object definitions: owner only."""
    with contextlib.suppress(PermissionError):  # a folder someone else owns stays as it is
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)


def _use_database(client: Client, database: str, create: bool) -> None:
    exists = client.command("SELECT count() FROM system.databases WHERE name = {d:String}",
                            parameters={"d": database})
    if not exists or str(exists) == "0":
        if not create:
            raise ConfigError(f"ClickHouse database {database} does not exist")
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
    client.database = database


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` (for tests and tools that make scratch databases)."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["database"] = database
        return parts._replace(query=urlencode(query)).geturl()
    return parts._replace(path=f"/{database}").geturl()


# ------------------------------------------------------------------ chDB lock


class _PathLock:
    """This process's hold on one chDB path: a lock file, and how many clients use it."""

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self.users = 0
        self.handle: IO[str] | None = None
        self.mutex = threading.Lock()


_path_locks: dict[Path, _PathLock] = {}
_registry = threading.Lock()


@contextlib.contextmanager
def _chdb_path_lock(path: Path, wait: float) -> Iterator[None]:
    with _registry:
        entry = _path_locks.setdefault(path, _PathLock(path.with_name(path.name + ".lock")))
    with entry.mutex:
        if entry.users == 0:
            entry.handle = _flock(entry.lock_file, path, wait)
        entry.users += 1
    try:
        yield
    finally:
        with entry.mutex:
            entry.users -= 1
            if entry.users == 0 and entry.handle is not None:
                _unlock(entry.handle)
                entry.handle = None


def _flock(lock_file: Path, path: Path, wait: float) -> IO[str]:
    """The lock file, exclusively locked; waits up to ``wait`` s for another process."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file, "a+")  # noqa: SIM115 -- held until the last client closes
    with contextlib.suppress(PermissionError):
        lock_file.chmod(0o600)
    deadline = time.monotonic() + max(wait, 0.0)
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(lock_file)
            if time.monotonic() >= deadline:
                handle.close()
                raise StoreUnavailable(
                    f"chDB at {path} is still in use by {holder} after waiting {wait:.0f} s; "
                    "a chDB path can be open in one process at a time (concurrent users need a "
                    "ClickHouse server)") from None
            if not announced:
                log.warning("chDB at %s is in use by %s; waiting up to %.0f s for it",
                            path, holder, wait)
                announced = True
            time.sleep(0.1)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}\n")
    handle.flush()
    return handle


def _holder(lock_file: Path) -> str:
    try:
        pid, _, command = lock_file.read_text().strip().partition(" ")
    except OSError:
        return "another process"
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (f" ({command})" if command else "")


def _unlock(handle: IO[str]) -> None:
    import fcntl

    try:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()

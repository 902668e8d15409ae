"""The Redis Functions library of ``redis/scripts``: assembled, loaded, checked.

Every multi-step operation of this package is one function of one library,
``platformdb``, loaded by ``platformdb migrate up`` (``FUNCTION LOAD
REPLACE`` on every primary, under the migrate ACL user). Services call it
with ``FCALL`` / ``FCALL_RO`` and can never load or evaluate code themselves.

The library is assembled from ``redis/scripts/library.lua`` (the preamble:
``-- library:`` and ``-- version:`` lines, shared helpers) and one file per
function (``-- function: <name>`` and an optional ``-- flags: no-writes``
line). Each function body is written like a script, with ``KEYS`` and
``ARGV``, and registered as ``platformdb_<name>``. Every call passes the
library version this package needs as its last argument; a server that holds
no library, or an older one, makes the call raise :class:`FunctionsNotLoaded`.

Errors a function answers with ``INVALID ...`` surface as
:class:`~platformdb.errors.ValidationError`, never as a silent success.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from platformdb.errors import Hint, PlatformDBError, StoreUnavailable, ValidationError
from platformdb.redis import codec
from platformdb.redis.client import SyncClient, is_cluster
from platformdb.resources import data_dir

LIBRARY = "platformdb"
PREAMBLE = "library.lua"
_HEADER = re.compile(r"^--\s*(library|version|function|flags):\s*(.*?)\s*$", re.MULTILINE)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_FLAGS = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster"})


class FunctionsNotLoaded(StoreUnavailable):
    """The server holds no ``platformdb`` library, or an older one than this package needs.

    ``loaded`` is the server's library version (None: no library at all) and
    ``needed`` the version this package calls. ``platformdb migrate up`` loads it.
    """

    def __init__(self, loaded: int | None, needed: int) -> None:
        self.loaded = loaded
        self.needed = needed
        state = "not loaded" if loaded is None else f"version {loaded} < {needed}"
        super().__init__(f"Redis functions library '{LIBRARY}' {state}", store="redis",
                         hint=Hint(command="platformdb migrate up"))


@dataclass(frozen=True)
class Function:
    """One function of the library: its file, flags and body."""

    name: str
    flags: tuple[str, ...]
    body: str
    path: Path

    @property
    def server_name(self) -> str:
        return f"{LIBRARY}_{self.name}"

    @property
    def readonly(self) -> bool:
        """Flagged ``no-writes``: called with ``FCALL_RO`` (also on replicas)."""
        return "no-writes" in self.flags


@dataclass(frozen=True)
class Library:
    """The assembled library: what ``FUNCTION LOAD`` receives."""

    name: str
    version: int
    code: str
    functions: Mapping[str, Function]
    directory: Path

    @property
    def checksum(self) -> str:
        """SHA-256 of the code: what the ledger records and status compares."""
        return checksum(self.code)

    def __getitem__(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise PlatformDBError(f"no function {name!r} in {self.directory}") from None


def checksum(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def scripts_dir() -> Path:
    """``redis/scripts`` of the checkout, else the copy inside the installed wheel."""
    return data_dir("redis") / "scripts"


def _headers(path: Path, text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in _HEADER.findall(text[:4000]):
        if key in found:
            raise PlatformDBError(f"{path}: more than one '-- {key}:' line")
        found[key] = value
    return found


def read_function(path: Path) -> Function:
    text = path.read_text(encoding="utf-8")
    header = _headers(path, text)
    name = header.get("function")
    if name != path.stem or not _NAME.fullmatch(name):
        raise PlatformDBError(f"{path}: the header needs '-- function: {path.stem}' "
                              "(lower_snake_case, the file's name)")
    flags = tuple(header.get("flags", "").replace(",", " ").split())
    unknown = set(flags) - _FLAGS
    if unknown:
        raise PlatformDBError(f"{path}: unknown flags {sorted(unknown)}")
    return Function(name=name, flags=flags, body=text, path=path)


def read_library(directory: Path) -> Library:
    """Assemble the library from ``directory`` (the preamble and every function file)."""
    preamble_path = directory / PREAMBLE
    if not preamble_path.is_file():
        raise PlatformDBError(f"no {PREAMBLE} in {directory}; is the package data missing?")
    preamble = preamble_path.read_text(encoding="utf-8")
    header = _headers(preamble_path, preamble)
    if header.get("library") != LIBRARY or not header.get("version", "").isdigit():
        raise PlatformDBError(f"{preamble_path}: the header needs '-- library: {LIBRARY}' "
                              "and '-- version: N'")
    version = int(header["version"])
    paths = sorted(p for p in directory.glob("*.lua") if p.name != PREAMBLE)
    functions = {f.name: f for f in map(read_function, paths)}
    if not functions:
        raise PlatformDBError(f"no function files in {directory}")
    parts = [f"#!lua name={LIBRARY}\n", f"local LIBRARY_VERSION = {version}\n\n", preamble]
    for function in functions.values():
        flags = ", ".join(f"'{flag}'" for flag in function.flags)
        parts.append(
            f"\n-- {function.path.name} " + "-" * max(0, 60 - len(function.path.name)) + "\n"
            f"local function {function.name}(KEYS, ARGV)\n{function.body.rstrip()}\nend\n"
            f"register('{function.name}', {{{flags}}}, {function.name})\n"
        )
    return Library(LIBRARY, version, "".join(parts), functions, directory)


@cache
def library() -> Library:
    """The package's library, read from disk once per process."""
    return read_library(scripts_dir())


# ------------------------------------------------------------------ errors


def translate(exc: RedisError) -> PlatformDBError:
    """A redis-py error of a function call as the platformdb error a caller can act on."""
    message = str(exc)
    if isinstance(exc, ResponseError):
        if message.startswith("INVALID"):
            return ValidationError(message.removeprefix("INVALID ").strip())
        if message.startswith("PLATFORMDB_OLD"):
            loaded = message.split()[1:2]
            return FunctionsNotLoaded(int(loaded[0]) if loaded and loaded[0].isdigit() else None,
                                      library().version)
        if "function not found" in message.lower():
            return FunctionsNotLoaded(None, library().version)
    if isinstance(exc, NoPermissionError | AuthenticationError):
        return StoreUnavailable(f"Redis refused the command: {message}; check the ACL user")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return StoreUnavailable(f"Redis is unreachable: {message}")
    return PlatformDBError(f"Redis error: {message}")


# ------------------------------------------------------------ on the server


@dataclass(frozen=True)
class NodeLibrary:
    """What one primary holds: the library's code checksum and version (None: nothing)."""

    node: str
    checksum: str | None
    version: int | None


_VERSION_LINE = re.compile(r"^local LIBRARY_VERSION = (\d+)$", re.MULTILINE)


def _node_state(node: str, reply: Any) -> NodeLibrary:
    for entry in reply or []:
        fields = _pairs(entry)
        if codec.text(fields.get("library_name", b"")) != LIBRARY:
            continue
        code = codec.text(fields.get("library_code", b""))
        match = _VERSION_LINE.search(code)
        return NodeLibrary(node, checksum(code), int(match.group(1)) if match else None)
    return NodeLibrary(node, None, None)


def _pairs(entry: Any) -> dict[str, Any]:
    if isinstance(entry, Mapping):
        return {codec.text(k): v for k, v in entry.items()}
    items = list(entry)
    return {codec.text(k): v for k, v in zip(items[::2], items[1::2], strict=True)}


def on_server(client: SyncClient) -> list[NodeLibrary]:
    """The ``platformdb`` library of every primary (one entry on a standalone server)."""
    args = ("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY, "WITHCODE")
    try:
        if is_cluster(client):
            replies = client.execute_command(  # type: ignore[no-untyped-call]
                *args, target_nodes="primaries")
            if not isinstance(replies, Mapping):  # one primary: redis-py unwraps the dict
                replies = {"primary": replies}
            return [_node_state(str(node), reply) for node, reply in sorted(replies.items())]
        reply = client.execute_command(*args)  # type: ignore[no-untyped-call]
    except RedisError as exc:
        raise translate(exc) from exc
    return [_node_state("standalone", reply)]


def load(client: SyncClient, code: str | None = None) -> None:
    """``FUNCTION LOAD REPLACE`` the library (``code``, default: this package's) on
    every primary: atomic per server, and calls never see half a library."""
    code = library().code if code is None else code
    try:
        if is_cluster(client):
            client.execute_command(  # type: ignore[no-untyped-call]
                "FUNCTION", "LOAD", "REPLACE", code, target_nodes="primaries")
        else:
            client.execute_command("FUNCTION", "LOAD", "REPLACE", code)  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            raise StoreUnavailable(
                "this Redis has no FUNCTION command; platformdb needs Redis 7+ or Valkey 7.2+"
            ) from exc
        raise PlatformDBError(f"FUNCTION LOAD of library '{LIBRARY}' failed: {exc}") from exc
    except RedisError as exc:
        raise translate(exc) from exc

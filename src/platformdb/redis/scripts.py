"""The Lua scripts of ``redis/scripts``: read once, called by SHA.

Every script is sent as ``EVALSHA``; a server that does not know it (restart,
failover, ``SCRIPT FLUSH``) answers NOSCRIPT and the script is loaded and the
call repeated, transparently. :func:`load_all` loads every script up front,
which is what ``platformdb migrate up`` does.

Each file opens with a header (``-- name:``, ``-- version:``, KEYS, ARGV,
returns). The version is bumped by hand when a script's behaviour changes; the
SHA changes with any edit.

Scripts report bad arguments with an error reply starting with ``INVALID``;
those surface as :class:`~platformdb.errors.ValidationError`, never as a
silent success.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

from redis.asyncio.client import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from platformdb.errors import PlatformDBError, StoreUnavailable, ValidationError
from platformdb.redis import _direct
from platformdb.resources import data_dir

SyncClient: TypeAlias = "Redis | RedisCluster"
AsyncClient: TypeAlias = "AsyncRedis | AsyncRedisCluster"
Arg: TypeAlias = "str | int | float | bytes"

_HEADER = re.compile(r"^--\s*(name|version):\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Script:
    """One Lua script: its source and the SHA1 the server will know it by."""

    name: str
    version: str
    source: str
    sha: str
    path: Path


def scripts_dir() -> Path:
    """``redis/scripts`` of the checkout, else the copy inside the installed wheel."""
    return data_dir("redis") / "scripts"


def read_script(path: Path) -> Script:
    source = path.read_text(encoding="utf-8")
    header = dict(_HEADER.findall(source[:2000]))
    name = header.get("name")
    if name != path.stem:
        raise PlatformDBError(f"{path}: header '-- name: {name}' must match the file name")
    version = header.get("version")
    if version is None:
        raise PlatformDBError(f"{path}: the header needs a '-- version: N' line")
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return Script(name=name, version=version, source=source, sha=sha, path=path)


class ScriptRegistry:
    """Every script of one directory, by name."""

    def __init__(self, directory: Path) -> None:
        paths = sorted(directory.glob("*.lua"))
        if not paths:
            raise PlatformDBError(f"no Lua scripts in {directory}; is the package data missing?")
        self.directory = directory
        self._scripts = {script.name: script for script in map(read_script, paths)}

    def __getitem__(self, name: str) -> Script:
        try:
            return self._scripts[name]
        except KeyError:
            raise PlatformDBError(f"no Lua script named {name!r} in {self.directory}") from None

    def __iter__(self) -> Any:
        return iter(self._scripts.values())

    def names(self) -> list[str]:
        return sorted(self._scripts)

    def versions(self) -> dict[str, str]:
        """name -> "<version>:<sha>", what a migration ledger records."""
        return {s.name: f"{s.version}:{s.sha}" for s in self._scripts.values()}

    # -- loading --------------------------------------------------------

    def load_all(self, client: SyncClient) -> dict[str, str]:
        """``SCRIPT LOAD`` every script (on every primary of a Cluster); name -> sha."""
        return {name: self.load(client, name) for name in self._scripts}

    def load(self, client: SyncClient, name: str) -> str:
        """``SCRIPT LOAD`` one script (on every primary of a Cluster); its sha."""
        script = self[name]
        return _check_sha(script, _call(client.script_load, script.source))

    async def load_all_async(self, client: AsyncClient) -> dict[str, str]:
        loaded: dict[str, str] = {}
        for script in self._scripts.values():
            try:
                sha = await client.script_load(script.source)
            except RedisError as exc:
                raise _translate(exc) from exc
            loaded[script.name] = _check_sha(script, sha)
        return loaded

    # -- calling --------------------------------------------------------

    def run(self, client: SyncClient, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script by SHA; load it and retry once on NOSCRIPT."""
        script = self[name]
        try:
            try:
                return _evalsha(client, script, keys, args)
            except NoScriptError:
                client.script_load(script.source)
                return _evalsha(client, script, keys, args)
        except RedisError as exc:
            raise _translate(exc) from exc

    async def run_async(
        self, client: AsyncClient, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        script = self[name]
        try:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except RedisError as exc:
            raise _translate(exc) from exc

    def run_many(
        self, client: SyncClient, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        """Run one script many times in a single pipeline (one round trip per node).

        Calls that met NOSCRIPT are repeated after loading the script; the
        others are not, so no call takes effect twice.
        """
        script = self[name]
        try:
            results = _pipeline(client, script, calls)
            missing = _noscript(results)
            if missing:
                client.script_load(script.source)
                retried = _pipeline(client, script, [calls[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        except RedisError as exc:
            raise _translate(exc) from exc
        for result in results:
            if isinstance(result, RedisError):
                raise _translate(result) from result
        return results

    async def run_many_async(
        self, client: AsyncClient, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        script = self[name]
        try:
            results = await _pipeline_async(client, script, calls)
            missing = _noscript(results)
            if missing:
                await client.script_load(script.source)
                retried = await _pipeline_async(client, script, [calls[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        except RedisError as exc:
            raise _translate(exc) from exc
        for result in results:
            if isinstance(result, RedisError):
                raise _translate(result) from result
        return results


def _evalsha(client: SyncClient, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    direct = _direct.usable(client)
    if direct is not None:
        try:
            return _direct.call(direct, ("EVALSHA", script.sha, len(keys), *keys, *args))
        except _direct.Fallback:
            pass
    return client.evalsha(script.sha, len(keys), *keys, *args)


def _pipeline(
    client: SyncClient, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
) -> list[Any]:
    direct = _direct.usable(client)
    if direct is not None:
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        try:
            return _direct.pipeline(direct, commands)
        except _direct.Fallback:
            pass
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        # execute_command, not pipe.evalsha: a Cluster pipeline only routes
        # EVALSHA through the generic path.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    return list(pipe.execute(raise_on_error=False))


async def _pipeline_async(
    client: AsyncClient, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    return list(await pipe.execute(raise_on_error=False))


def _noscript(results: list[Any]) -> list[int]:
    return [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]


def _call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except RedisError as exc:
        raise _translate(exc) from exc


def _check_sha(script: Script, sha: str | bytes) -> str:
    text = sha.decode() if isinstance(sha, bytes) else sha
    if text != script.sha:
        raise PlatformDBError(
            f"server returned SHA {text} for {script.name}, expected {script.sha}"
        )
    return text


def _translate(exc: RedisError) -> PlatformDBError:
    """A redis-py error as the platformdb error a caller can act on."""
    message = str(exc)
    if isinstance(exc, ResponseError) and message.startswith("INVALID"):
        return ValidationError(message.removeprefix("INVALID ").strip())
    if isinstance(exc, NoPermissionError | AuthenticationError):
        return StoreUnavailable(f"Redis refused the command: {message}; check the ACL user")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return StoreUnavailable(f"Redis is unreachable: {message}; check PLATFORMDB_REDIS_URL")
    return PlatformDBError(f"Redis error: {message}")


@cache
def registry() -> ScriptRegistry:
    """The registry of the package's scripts, read from disk once per process."""
    return ScriptRegistry(scripts_dir())


def load_all(client: SyncClient) -> dict[str, str]:
    """Load every script on ``client``'s server(s); name -> sha. Used by ``migrate up``."""
    return registry().load_all(client)


async def load_all_async(client: AsyncClient) -> dict[str, str]:
    return await registry().load_all_async(client)


def script_versions() -> dict[str, str]:
    """name -> "<version>:<sha>" of every script."""
    return registry().versions()

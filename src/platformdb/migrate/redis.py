"""Redis's part of ``platformdb migrate``: the Lua script library.

Redis has no schema to migrate; what ``migrate up`` installs there is the
versioned scripts of ``redis/scripts``. Every script is ``SCRIPT LOAD``-ed (on
every primary of a Cluster) and a ledger hash, ``platformdb:scripts``, records
for each script the version and SHA that were loaded, when and by whom.

``status`` compares files, ledger and server:

- ``loaded``: the ledger holds the file's version and SHA and the server knows it;
- ``pending``: never loaded here;
- ``changed``: the file's version or SHA differs from what was loaded;
- ``not on server``: recorded, but the server lost it (restart, failover,
  ``SCRIPT FLUSH``). Calls would reload it transparently (NOSCRIPT
  fallback); ``migrate up`` loads it up front.

Scripts have no down files: an older script version is whatever the older
checkout loads (``migrate up`` from it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from platformdb.errors import StoreUnavailable
from platformdb.migrate.engine import Step, who
from platformdb.redis import client as redis_client
from platformdb.redis import codec, scripts
from platformdb.redis.scripts import Script, SyncClient

STORE = "redis"
LEDGER = "platformdb:scripts"


@dataclass(frozen=True)
class ScriptStatus:
    """One line of ``migrate status`` for Redis."""

    name: str
    version: str
    sha: str
    state: str  # loaded | pending | changed | not on server
    loaded_at: str | None = None
    loaded_by: str | None = None


@contextmanager
def open_client(url: str) -> Iterator[SyncClient]:
    """A client for the Redis at ``url``, checked with PING."""
    client = redis_client.connect(url)
    try:
        redis_client.ping(client)
        yield client
    finally:
        client.close()


def ledger(client: SyncClient) -> dict[str, dict[str, str]]:
    raw = client.hgetall(LEDGER)
    return {codec.text(name): json.loads(codec.text(value)) for name, value in raw.items()}


def status(client: SyncClient) -> list[ScriptStatus]:
    """Every script of the package with its state on ``client``'s server."""
    wanted = list(scripts.registry())
    recorded = ledger(client)
    try:
        on_server = client.script_exists(*[s.sha for s in wanted])
    except RedisError as exc:
        raise StoreUnavailable(f"Redis refused SCRIPT EXISTS: {exc}") from exc
    rows: list[ScriptStatus] = []
    for script, exists in zip(wanted, _flags(on_server, len(wanted)), strict=True):
        entry = recorded.get(script.name)
        if entry is None:
            state = "pending"
        elif (entry.get("version"), entry.get("sha")) != (script.version, script.sha):
            state = "changed"
        elif not exists:
            state = "not on server"
        else:
            state = "loaded"
        rows.append(ScriptStatus(script.name, script.version, script.sha, state,
                                 entry.get("loaded_at") if entry else None,
                                 entry.get("loaded_by") if entry else None))
    return rows


def up(client: SyncClient, dry_run: bool = False) -> list[Step]:
    """Load every script whose state is not ``loaded``; record it in the ledger."""
    steps: list[Step] = []
    for row in status(client):
        if row.state == "loaded":
            continue
        label = f"script {row.name} v{row.version} ({row.state})"
        if dry_run:
            steps.append(Step(STORE, "up", label, None))
            continue
        started = time.perf_counter()
        _load(client, scripts.registry()[row.name])
        steps.append(Step(STORE, "up", label, round((time.perf_counter() - started) * 1000)))
    return steps


def verify(client: SyncClient) -> list[str]:
    """Problems: scripts loaded at another version than the files hold."""
    return verify_rows(status(client))


def verify_rows(rows: list[ScriptStatus]) -> list[str]:
    return [f"script {row.name} was loaded at another version or SHA than "
            f"redis/scripts/{row.name}.lua (v{row.version}); run `platformdb migrate up`"
            for row in rows if row.state == "changed"]


def _load(client: SyncClient, script: Script) -> None:
    scripts.registry().load(client, script.name)
    entry = {"version": script.version, "sha": script.sha,
             "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"), "loaded_by": who()}
    client.hset(LEDGER, script.name, json.dumps(entry, sort_keys=True))


def _flags(answer: object, count: int) -> list[bool]:
    """``SCRIPT EXISTS`` as one flag per script (a Cluster answers per node)."""
    if isinstance(answer, dict):  # node -> flags: a script counts only if every primary has it
        per_node = [list(flags) for flags in answer.values()]
        return [all(bool(flags[i]) for flags in per_node) for i in range(count)]
    assert isinstance(answer, list)
    return [bool(flag) for flag in answer]

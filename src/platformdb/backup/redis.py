"""Redis backup and restore as a logical, type-aware dump.

``SCAN`` walks the keyspace (never ``KEYS``); each key is written as one JSON
line with its type, remaining TTL and value, binary-safe (base64). Unlike an
RDB snapshot this works against a remote or managed server and restores into
any Redis 7 compatible server, whatever its RDB version. Streams keep their
entries but not their consumer groups.

A restore parses and checks the whole file before writing, refuses a
non-empty database unless forced, and writes every key in one MULTI/EXEC so a
failure leaves the target as it was.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from platformdb.backup.manifest import TableState, backup_folder, new_manifest, read_manifest
from platformdb.config import mask_password
from platformdb.errors import CheckFailed, StoreUnavailable, ValidationError

STORE = "redis"
DATA_FILE = "keys.jsonl.gz"
BATCH = 500
TYPES = ("string", "hash", "list", "set", "zset", "stream")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: str) -> bytes:
    return base64.b64decode(value.encode("ascii"), validate=True)


@dataclass(frozen=True)
class RedisRestoreReport:
    target: str
    keys: int
    types: dict[str, TableState]
    mismatches: list[str]


def client(url: str) -> redis.Redis:
    conn = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot reach Redis at {mask_password(url)}: {exc}") from exc
    return conn


def _read_value(conn: Any, key: bytes, kind: str) -> Any:
    # conn: a redis.Redis without decode_responses, so every reply is bytes
    if kind == "string":
        return _b64(conn.get(key) or b"")
    if kind == "hash":
        return {_b64(f): _b64(v) for f, v in sorted(conn.hgetall(key).items())}
    if kind == "list":
        return [_b64(v) for v in conn.lrange(key, 0, -1)]
    if kind == "set":
        return sorted(_b64(v) for v in conn.smembers(key))
    if kind == "zset":
        return [[_b64(m), s] for m, s in conn.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        return [[i.decode(), {_b64(f): _b64(v) for f, v in fields.items()}]
                for i, fields in conn.xrange(key)]
    raise ValidationError(f"key {key!r} has type {kind}, which the logical backup cannot hold")


def _entries(conn: redis.Redis, match: str) -> Iterator[dict[str, Any]]:
    batch: list[bytes] = []
    for key in conn.scan_iter(match=match, count=1000):
        batch.append(key)
        if len(batch) >= BATCH:
            yield from _describe(conn, batch)
            batch = []
    if batch:
        yield from _describe(conn, batch)


def _describe(conn: redis.Redis, keys: list[bytes]) -> Iterator[dict[str, Any]]:
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.pttl(key)
    meta = pipe.execute()
    for index, key in enumerate(keys):
        kind = meta[2 * index].decode() if isinstance(meta[2 * index], bytes) else meta[2 * index]
        if kind == "none":  # expired between SCAN and TYPE
            continue
        ttl = int(meta[2 * index + 1])
        yield {"key": _b64(key), "type": kind, "ttl_ms": ttl if ttl > 0 else None,
               "value": _read_value(conn, key, kind)}


def entry_digest(entry: dict[str, Any]) -> int:
    """A 60-bit hash of a key's name, type and value (TTL excluded: it ticks)."""
    stable = json.dumps([entry["key"], entry["type"], entry["value"]], sort_keys=True)
    return int(hashlib.sha256(stable.encode()).hexdigest()[:15], 16)


def summarise(entries: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> dict[str, TableState]:
    counts: dict[str, int] = {}
    sums: dict[str, int] = {}
    for entry in entries:
        counts[entry["type"]] = counts.get(entry["type"], 0) + 1
        sums[entry["type"]] = sums.get(entry["type"], 0) + entry_digest(entry)
    return {kind: TableState(rows=counts[kind], checksum=str(sums[kind]))
            for kind in sorted(counts)}


def backup(url: str, out_dir: Path, *, match: str = "*") -> Path:
    """Write every key matching ``match`` to a new backup folder."""
    conn = client(url)
    folder = backup_folder(out_dir, STORE)
    digests: list[dict[str, Any]] = []
    with gzip.open(folder / DATA_FILE, "wt", encoding="utf-8") as handle:
        for entry in _entries(conn, match):
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            digests.append({"key": entry["key"], "type": entry["type"],
                            "value": entry["value"]})
    info = conn.info("server")
    manifest = new_manifest(
        STORE,
        tools={"server": f"{info.get('server_name', 'redis')} {info.get('redis_version', '?')}"},
        schema_version=None, migrations=[], tables=summarise(iter(digests)),
        extra={"match": match, "keys": len(digests)},
    )
    manifest.write(folder)
    conn.close()
    return folder


def _load(folder: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    try:
        with gzip.open(folder / DATA_FILE, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                entry = json.loads(line)
                if entry.get("type") not in TYPES or "key" not in entry:
                    raise ValidationError(f"{DATA_FILE}:{number}: not a key entry")
                _unb64(entry["key"])
                entries.append(entry)
    except (OSError, EOFError, ValueError) as exc:
        raise ValidationError(f"{folder / DATA_FILE} cannot be read: {exc}") from exc
    return entries


def _write(pipe: Any, entry: dict[str, Any]) -> None:
    key = _unb64(entry["key"])
    kind, value = entry["type"], entry["value"]
    pipe.delete(key)
    if kind == "string":
        pipe.set(key, _unb64(value))
    elif kind == "hash":
        pipe.hset(key, mapping={_unb64(f): _unb64(v) for f, v in value.items()})
    elif kind == "list":
        pipe.rpush(key, *[_unb64(v) for v in value])
    elif kind == "set":
        pipe.sadd(key, *[_unb64(v) for v in value])
    elif kind == "zset":
        pipe.zadd(key, {_unb64(m): float(s) for m, s in value})
    elif kind == "stream":
        for entry_id, fields in value:
            pipe.xadd(key, {_unb64(f): _unb64(v) for f, v in fields.items()}, id=entry_id)
    if entry.get("ttl_ms"):
        pipe.pexpire(key, int(entry["ttl_ms"]))


def restore(folder: Path, url: str, *, force: bool = False,
            verify: bool = False) -> RedisRestoreReport:
    """Restore a logical backup into the database at ``url``."""
    manifest = read_manifest(folder, STORE)
    entries = _load(folder)
    if summarise(iter(entries)) != manifest.tables:
        raise ValidationError(f"{folder / DATA_FILE} does not match its manifest; refusing")
    conn = client(url)
    if conn.dbsize() and not force:
        raise ValidationError(
            f"target Redis {mask_password(url)} is not empty ({conn.dbsize()} keys);"
            " pass --force to write over it")
    pipe = conn.pipeline(transaction=True)
    for entry in entries:
        _write(pipe, entry)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"restore into Redis failed, nothing was written: {exc}") from exc
    restored = summarise(_entries(conn, manifest.extra.get("match", "*")))
    conn.close()
    mismatches = [f"{kind}: expected {state.rows} keys, found "
                  f"{restored[kind].rows if kind in restored else 0}"
                  for kind, state in manifest.tables.items() if restored.get(kind) != state]
    if verify and mismatches:
        raise CheckFailed(f"restored keys differ from the manifest: {mismatches[0]}")
    return RedisRestoreReport(mask_password(url), len(entries), restored, mismatches)

"""Redis backup and restore as a logical, type-aware dump; restores stage, verify, switch.

**Backup.** ``SCAN`` walks the keyspace (never ``KEYS``; on a Cluster every
primary); each key is written as one JSON line with its type, remaining TTL
and value, binary-safe (base64). Keys are read by a script, all keys of one
hash tag in one call, so what one tag holds is captured at one point; a key
deleted or expired since SCAN saw it is skipped. A job queue (every key of
``queue:{<type>}``) is read whole from its structures: every member of its
ready, processing, claims, delayed and dead structures comes with its job
hash (one enqueued after SCAN passed included), in the same call as every
other key of that tag SCAN found (one deleted since, an acked job's, is
skipped), so a backup taken while workers run restores a queue that holds its
invariants. Different tags are read at different moments: the backup is
consistent per hash tag, not across the keyspace. Unlike an RDB snapshot this works against a
remote or managed server and a Cluster, and restores into any Redis 7
compatible server. Streams keep their entries but not their consumer groups.
A backup covers the keys matching its ``match`` pattern (default: all): its
*scope*, recorded in the manifest.

**Restore replaces the backup's scope, atomically.** Three steps, each
callable on its own (``restore all`` stages every store before it switches
any):

1. :func:`stage` checks the files against the manifest, refuses a target
   that holds keys in scope unless ``force``, and writes every key under a
   staging name, ``__platformdb_restore:{<tag>}:<token>:<key>``, whose hash
   tag puts it in the same Cluster slot as the final key. Staged keys carry a
   TTL of a day (:data:`STAGING_TTL_MS`), so a restore killed before its switch
   leaves nothing for ever; the switch gives each key its backed-up TTL (or none).
2. :func:`verify` reads the staged copy back and compares counts and
   checksums per type with the manifest. A failure discards the staged keys:
   the target is exactly as it was.
3. :func:`switch` makes the target's scope equal to the backup, one
   ``MULTI``/``EXEC`` per server (standalone) or per slot (Cluster): keys in
   scope that the backup does not hold are deleted, staged keys are renamed
   over their final names (``RENAME`` keeps them in their slot) and get
   their TTLs. Clients see the old scope or the new one, never a mix (per
   slot on a Cluster).

Keys outside the backup's scope are never touched: a backup of
``session:*`` restores sessions and leaves the cache alone. Writes that
reach in-scope keys while a restore runs may survive it; stop writers first.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import itertools
import json
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError, WatchError

from platformdb.backup.manifest import (
    Manifest,
    TableState,
    backup_folder,
    new_manifest,
    read_manifest,
)
from platformdb.errors import CheckFailed, Hint, StoreUnavailable, ValidationError
from platformdb.journal import crash_point
from platformdb.redaction import redact
from platformdb.redis import connect
from platformdb.redis.client import SyncClient, is_cluster

STORE = "redis"
DATA_FILE = "keys.jsonl.gz"
BATCH = 500
TYPES = ("string", "hash", "list", "set", "zset", "stream")
STAGING = b"__platformdb_restore:"
STAGING_TTL_MS = 24 * 3600 * 1000
"""How long a staged key lives if no switch takes it (a killed restore leaves nothing
forever); the switch gives each key its backed-up TTL, or none."""


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


def client(url: str) -> SyncClient:
    """A binary-safe client for ``url`` (any form :func:`platformdb.redis.connect` takes)."""
    conn = connect(url, decode_responses=False)
    try:
        conn.ping()
    except RedisError as exc:
        raise StoreUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    return conn


# ------------------------------------------------------------------ backup


# One atomic read of a group of keys that share a hash tag (so one slot). KEYS: the
# keys to read; ARGV: queue bases (``<prefix>queue:{<type>}``) whose structures and
# job hashes are read here too, from their members, so a queue is captured at one
# point: every member with its job hash, every job hash in exactly one structure.
# A key that is gone (deleted or expired since SCAN) is left out, never written as
# an empty value. Replies: {key, type, pttl, value} per key (value in Redis's own
# reply shapes: flat field/value and member/score arrays).
_READ = """
local out, seen = {}, {}
local function read(key)
    if seen[key] then return end
    seen[key] = true
    local kind = redis.call('TYPE', key)['ok']
    local value
    if kind == 'string' then value = redis.call('GET', key)
    elseif kind == 'hash' then value = redis.call('HGETALL', key)
    elseif kind == 'list' then value = redis.call('LRANGE', key, 0, -1)
    elseif kind == 'set' then value = redis.call('SMEMBERS', key)
    elseif kind == 'zset' then value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    elseif kind == 'stream' then value = redis.call('XRANGE', key, '-', '+')
    elseif kind == 'none' then return
    else value = false end
    out[#out + 1] = {key, kind, redis.call('PTTL', key), value}
end
for _, base in ipairs(ARGV) do
    for _, suffix in ipairs({'', ':processing', ':claims', ':delayed', ':dead', ':stats',
                             ':wake'}) do
        read(base .. suffix)
    end
    for _, list in ipairs({'', ':processing', ':dead'}) do
        for _, member in ipairs(redis.call('LRANGE', base .. list, 0, -1)) do
            read(base .. ':job:' .. member)
        end
    end
    for _, zset in ipairs({':claims', ':delayed'}) do
        for _, member in ipairs(redis.call('ZRANGE', base .. zset, 0, -1)) do
            read(base .. ':job:' .. member)
        end
    end
end
for _, key in ipairs(KEYS) do read(key) end
return out
"""
_QUEUE_KEY = re.compile(rb"^(?P<base>(?:.*:)?queue:\{[^{}]+\})(?::(?P<rest>.*))?$", re.S)
_QUEUE_PARTS = {b"processing", b"claims", b"delayed", b"dead", b"stats", b"wake"}


def _hash_tag(key: bytes) -> bytes | None:
    """The part of ``key`` Redis Cluster hashes, when the key has a ``{tag}``."""
    start = key.find(b"{")
    end = key.find(b"}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


def _queue_base(key: bytes) -> bytes | None:
    """The queue ``key`` belongs to (its ready list's name), when it is a queue key."""
    match = _QUEUE_KEY.match(key)
    if match is None:
        return None
    rest = match["rest"]
    if rest is None or rest in _QUEUE_PARTS or rest.startswith(b"job:"):
        return match["base"]
    return None


def _decode(kind: str, value: Any) -> Any:
    """A value as the backup writes it, from the script's reply."""
    if kind == "string":
        return _b64(value)
    if kind == "hash":
        pairs = zip(value[::2], value[1::2], strict=True)
        return {_b64(f): _b64(v) for f, v in sorted(pairs)}
    if kind == "list":
        return [_b64(v) for v in value]
    if kind == "set":
        return sorted(_b64(v) for v in value)
    if kind == "zset":
        return [[_b64(m), float(s)] for m, s in zip(value[::2], value[1::2], strict=True)]
    if kind == "stream":
        return [[_text(i), {_b64(f): _b64(v) for f, v in zip(fields[::2], fields[1::2],
                                                                strict=True)}]
                for i, fields in value]
    raise ValidationError(f"a key has type {kind}, which the logical backup cannot hold")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scan(conn: Any, match: str | bytes) -> Iterator[bytes]:
    """Keys matching ``match`` on every primary, staging keys left out."""
    for key in conn.scan_iter(match=match, count=1000):
        if not key.startswith(STAGING):
            yield key


@dataclass
class _Group:
    """Keys read by one script call: one hash tag (or untagged keys of one slot)."""

    keys: list[bytes] = field(default_factory=list)
    queues: set[bytes] = field(default_factory=set)


def _groups(conn: Any, names: Iterable[bytes], queues: bool) -> Iterator[_Group]:
    """``names`` grouped for atomic reads: every key of a hash tag together (with the
    queues of that tag, when ``queues``); untagged keys in batches of one slot."""
    cluster = is_cluster(conn)
    tagged: dict[bytes, _Group] = {}
    untagged: dict[int | None, _Group] = {}
    for name in names:
        tag = _hash_tag(name)
        if tag is None:
            group = untagged.setdefault(key_slot(name) if cluster else None, _Group())
            group.keys.append(name)
            if len(group.keys) >= BATCH:
                yield untagged.pop(key_slot(name) if cluster else None)
            continue
        group = tagged.setdefault(tag, _Group())
        group.keys.append(name)  # read again, and skipped if gone by then
        base = _queue_base(name) if queues else None
        if base is not None:
            group.queues.add(base)
    yield from untagged.values()
    yield from tagged.values()


def _entries(conn: Any, keys: Iterable[bytes], rename: dict[bytes, bytes] | None = None,
             *, queues: bool = False, match: str = "*") -> Iterator[dict[str, Any]]:
    """The entry of each key (read under ``rename[key]`` when given), each hash tag read
    atomically; with ``queues``, each queue read whole (its structures and job hashes)."""
    back = {name: key for key, name in rename.items()} if rename else None
    names = (rename[key] for key in keys) if rename else keys
    script = conn.register_script(_READ)
    pending: list[_Group] = []
    for group in _groups(conn, names, queues):
        pending.append(group)
        if len(pending) >= BATCH or is_cluster(conn):
            yield from _read(conn, script, pending, back, match)
            pending = []
    if pending:
        yield from _read(conn, script, pending, back, match)


def _read(conn: Any, script: Any, groups: list[_Group], back: dict[bytes, bytes] | None,
          match: str) -> Iterator[dict[str, Any]]:
    if is_cluster(conn):  # a tag's keys are in one slot: the script runs on its primary
        replies = [script(keys=g.keys, args=sorted(g.queues),
                          client=_node(conn, (g.keys or sorted(g.queues))[0])) for g in groups]
    else:
        pipe = conn.pipeline(transaction=False)
        for group in groups:
            script(keys=group.keys, args=sorted(group.queues), client=pipe)
        replies = pipe.execute()
    wanted = None if match == "*" else match.encode()
    for reply in replies:
        for name, kind, ttl, value in reply:
            kind = _text(kind)
            key = back.get(name, name) if back is not None else name
            if wanted is not None and not fnmatch.fnmatchcase(key, wanted):
                continue  # a queue's key outside the backup's scope
            yield {"key": _b64(key), "type": kind, "ttl_ms": int(ttl) if int(ttl) > 0 else None,
                   "value": _decode(kind, value)}


def entry_digest(entry: dict[str, Any]) -> int:
    """A 60-bit hash of a key's name, type and value (TTL excluded: it ticks)."""
    stable = json.dumps([entry["key"], entry["type"], entry["value"]], sort_keys=True)
    return int(hashlib.sha256(stable.encode()).hexdigest()[:15], 16)


def summarise(entries: Iterable[dict[str, Any]]) -> dict[str, TableState]:
    counts: dict[str, int] = {}
    sums: dict[str, int] = {}
    for entry in entries:
        counts[entry["type"]] = counts.get(entry["type"], 0) + 1
        sums[entry["type"]] = sums.get(entry["type"], 0) + entry_digest(entry)
    return {kind: TableState(rows=counts[kind], checksum=str(sums[kind]))
            for kind in sorted(counts)}


def backup(url: str, out_dir: Path, *, match: str = "*") -> Path:
    """Write every key matching ``match`` (the backup's scope) to a new backup folder."""
    conn = client(url)
    try:
        folder = backup_folder(out_dir, STORE)
        digests: list[dict[str, Any]] = []
        with gzip.open(folder / DATA_FILE, "wt", encoding="utf-8") as handle:
            for entry in _entries(conn, _scan(conn, match), queues=True, match=match):
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                digests.append({"key": entry["key"], "type": entry["type"],
                                "value": entry["value"]})
        manifest = new_manifest(
            STORE, tools={"server": _server(conn)}, schema_version=None, migrations=[],
            tables=summarise(digests), extra={"match": match, "keys": len(digests)},
        )
        manifest.write(folder)
    except RedisError as exc:
        raise StoreUnavailable(f"backup of Redis failed: {exc}") from exc
    finally:
        conn.close()
    return folder


def _server(conn: Any) -> str:
    info = conn.info("server")
    if info and all(isinstance(value, dict) for value in info.values()):
        info = next(iter(info.values()))  # a Cluster answers per node
    return f"{_text(info.get('server_name', 'redis'))} {_text(info.get('redis_version', '?'))}"


def load_entries(folder: Path) -> list[dict[str, Any]]:
    """Every entry of a backup's data file, checked for shape."""
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


# ----------------------------------------------------------------- restore


@dataclass
class Staged:
    """A backup written under staging names, not yet switched in."""

    folder: Path
    url: str
    conn: Any
    manifest: Manifest
    entries: list[dict[str, Any]]
    names: dict[bytes, bytes] = field(default_factory=dict)  # final key -> staging key
    previous: dict[bytes, bytes] = field(default_factory=dict)  # key -> where switch put it
    switched: list[bytes] = field(default_factory=list)  # keys whose group was switched
    token: bytes = b""  # the staging names' token
    aside: bytes = field(default_factory=lambda: secrets.token_hex(8).encode())
    """The token of the names the replaced keys get (chosen before the switch, journaled)."""

    @property
    def match(self) -> str:
        return str(self.manifest.extra.get("match", "*"))

    @property
    def target(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self.conn.close()


@cache
def _slot_tags() -> dict[int, bytes]:
    """For each Cluster slot, a short hash tag that maps to it (built on first need)."""
    found: dict[int, bytes] = {}
    for n in itertools.count():
        tag = b"%x" % n
        found.setdefault(key_slot(tag), tag)
        if len(found) == 16384:
            return found
    raise AssertionError("unreachable")


def staging_name(key: bytes, token: bytes) -> bytes:
    """A name for ``key`` under ``token`` that hashes to ``key``'s Cluster slot."""
    start = key.find(b"{")
    end = key.find(b"}", start + 1) if start >= 0 else -1
    if start >= 0 and end > start + 1:
        tag = key[start + 1 : end]  # the key's own hash tag
    elif b"}" not in key and key:
        tag = key  # no tag: Redis hashes the whole key, and so hashes {key}
    else:
        tag = _slot_tags()[key_slot(key)]
    return STAGING + b"{" + tag + b"}:" + token + b":" + key


def _write(pipe: Any, name: bytes, entry: dict[str, Any]) -> None:
    kind, value = entry["type"], entry["value"]
    pipe.delete(name)
    if kind == "string":
        pipe.set(name, _unb64(value))
    elif kind == "hash":
        if value:
            pipe.hset(name, mapping={_unb64(f): _unb64(v) for f, v in value.items()})
    elif kind == "list":
        pipe.rpush(name, *[_unb64(v) for v in value])
    elif kind == "set":
        pipe.sadd(name, *[_unb64(v) for v in value])
    elif kind == "zset":
        pipe.zadd(name, {_unb64(m): float(s) for m, s in value})
    elif kind == "stream":
        for entry_id, fields in value:
            pipe.xadd(name, {_unb64(f): _unb64(v) for f, v in fields.items()}, id=entry_id)
    pipe.pexpire(name, STAGING_TTL_MS)  # a staged copy nobody switches in expires


def stage(folder: Path, url: str, *, force: bool = False) -> Staged:
    """Check the backup and write it under staging names; the target's keys are untouched."""
    manifest = read_manifest(folder, STORE)
    entries = load_entries(folder)
    if summarise(entries) != manifest.tables:
        raise ValidationError(f"{folder / DATA_FILE} does not match its manifest; refusing")
    conn = client(url)
    staged = Staged(folder, url, conn, manifest, entries)
    try:
        if not force:
            present = next(_scan(conn, staged.match), None)
            if present is not None:
                raise ValidationError(
                    f"target Redis {staged.target} holds keys matching {staged.match!r} "
                    f"(e.g. {_text(present)!r})", hint=Hint(flag="--force", does="to replace them"))
        token = staged.token = secrets.token_hex(8).encode()
        for start in range(0, len(entries), BATCH):
            pipe = conn.pipeline(transaction=False)
            for entry in entries[start : start + BATCH]:
                key = _unb64(entry["key"])
                name = staging_name(key, token)
                staged.names[key] = name
                _write(pipe, name, entry)
            pipe.execute()
    except RedisError as exc:
        discard(staged)
        raise StoreUnavailable(f"staging the Redis restore failed, nothing was changed: "
                               f"{exc}") from exc
    except BaseException:
        discard(staged)
        raise
    return staged


def verify(staged: Staged) -> list[str]:
    """Differences between the staged copy and the manifest; empty when they agree."""
    try:
        found = summarise(_entries(staged.conn, list(staged.names), staged.names))
    except RedisError as exc:
        raise StoreUnavailable(f"reading the staged Redis restore failed: {exc}") from exc
    expected = staged.manifest.tables
    return [f"{kind}: expected {expected[kind].rows if kind in expected else 0} keys "
            f"(checksum {expected[kind].checksum if kind in expected else '-'}), staged "
            f"{found[kind].rows if kind in found else 0}"
            for kind in sorted(set(expected) | set(found)) if expected.get(kind) != found.get(kind)]


# One group's switch, atomic on the server: every key it renames must be there
# (else nothing happens), then the live keys go aside and the staged ones take
# their names. KEYS: the a live keys, their a aside names, the b staged keys,
# their b target names; ARGV: a, b, then each target's TTL in ms (0: none).
# A script rather than WATCH + MULTI: WATCH costs O(watched) per key, so a
# switch of N keys was O(N^2) (20,000 queued jobs took 9 s and timed out).
_SWITCH = """
local a, b = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, a do
    if redis.call('EXISTS', KEYS[i]) == 0 then return redis.error_reply('VANISHED') end
end
for i = 1, b do
    if redis.call('EXISTS', KEYS[2 * a + i]) == 0 then return redis.error_reply('VANISHED') end
end
for i = 1, a do redis.call('RENAME', KEYS[i], KEYS[a + i]) end
for i = 1, b do
    local key = KEYS[2 * a + b + i]
    redis.call('RENAME', KEYS[2 * a + i], key)
    local ttl = tonumber(ARGV[2 + i])
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return a + b
"""


def switch(staged: Staged, *, resume: bool = False) -> None:
    """Make the target's scope exactly the staged backup: one atomic script per server
    or slot (all of a standalone server's keys at once).

    The keys it replaces are not deleted but renamed aside (same hash tag, under
    ``staged.aside``), so a cross-store restore can still :func:`undo` the switch;
    :func:`commit` drops them. ``resume``: a killed switch is being finished: groups
    that no longer hold a staged key were switched already and are left alone.
    """
    conn = staged.conn
    ttls = {_unb64(e["key"]): int(e["ttl_ms"]) for e in staged.entries if e.get("ttl_ms")}
    aside = staged.aside
    try:
        current = list(_scan(conn, staged.match))
        groups: dict[Any, list[bytes]] = defaultdict(list)
        for key in {*current, *staged.names}:
            groups[_group(conn, key)].append(key)
        existing = set(current)
        crash_point("redis:switching")
        for keys in groups.values():
            if resume and not any(key in staged.names for key in keys):
                continue
            olds = [key for key in keys if key in existing]
            asides = [staging_name(key, aside) for key in olds]
            targets = [key for key in keys if key in staged.names]
            names = [staged.names[key] for key in targets]
            try:
                _node(conn, keys[0]).eval(
                    _SWITCH, 2 * (len(olds) + len(targets)), *olds, *asides, *names, *targets,
                    len(olds), len(targets), *(ttls.get(key, 0) for key in targets))
            except ResponseError as exc:
                if "VANISHED" not in str(exc):
                    raise
                raise WatchError("a key vanished before the switch") from exc
            staged.previous.update(zip(olds, asides, strict=True))
            staged.switched.extend(keys)
    except WatchError as exc:
        _forget_unswitched(staged)
        raise StoreUnavailable(
            "a key changed before the Redis restore switched; "
            + ("slots switched before hold the backup, the others are unchanged"
               if is_cluster(conn) else "nothing was changed")) from exc
    except RedisError as exc:
        _forget_unswitched(staged)
        raise StoreUnavailable(
            f"switching the Redis restore failed: {exc}"
            + ("; slots switched before the failure hold the backup, the others are unchanged"
               if is_cluster(conn) else "; nothing was changed")) from exc
    staged.names.clear()


def _forget_unswitched(staged: Staged) -> None:
    """After a failed switch only the switched groups' renames happened."""
    done = set(staged.switched)
    staged.previous = {k: v for k, v in staged.previous.items() if k in done}


def undo(staged: Staged) -> None:
    """Put back what :func:`switch` replaced: the target's scope is as before the switch."""
    conn = staged.conn
    groups: dict[Any, list[bytes]] = defaultdict(list)
    for key in staged.switched:
        groups[_group(conn, key)].append(key)
    try:
        for keys in groups.values():
            with _node(conn, keys[0]).pipeline(transaction=True) as pipe:
                for key in keys:
                    if key in staged.previous:
                        pipe.rename(staged.previous[key], key)  # replaces the restored value
                    else:
                        pipe.delete(key)  # the backup brought it; it was not there before
                pipe.execute()
    except RedisError as exc:
        raise StoreUnavailable(f"putting the previous Redis keys back failed: {exc}") from exc
    staged.switched.clear()
    staged.previous.clear()


def commit(staged: Staged) -> int:
    """Drop the keys :func:`switch` set aside: the restore is final."""
    names = list(staged.previous.values())
    try:
        for start in range(0, len(names), BATCH):
            pipe = staged.conn.pipeline(transaction=False)
            for name in names[start : start + BATCH]:
                pipe.delete(name)
            pipe.execute()
    except RedisError as exc:
        raise StoreUnavailable(f"dropping the replaced Redis keys failed: {exc}") from exc
    staged.previous.clear()
    staged.switched.clear()
    return len(names)


def _group(conn: Any, key: bytes) -> Any:
    """What one MULTI may cover: everything on a standalone server, one slot on a Cluster."""
    return key_slot(key) if is_cluster(conn) else None


def _node(conn: Any, key: bytes) -> Any:
    """The client a group's MULTI goes to: the server, or the primary of ``key``'s slot."""
    if not is_cluster(conn):
        return conn
    return conn.get_node_from_key(key).redis_connection


def discard(staged: Staged) -> int:
    """Delete the staged keys (after a failed verify, or instead of a switch)."""
    names = list(staged.names.values())
    deleted = 0
    try:
        for start in range(0, len(names), BATCH):
            pipe = staged.conn.pipeline(transaction=False)
            for name in names[start : start + BATCH]:
                pipe.delete(name)
            deleted += sum(int(n) for n in pipe.execute())
    except RedisError as exc:
        raise StoreUnavailable(f"discarding the staged Redis restore failed: {exc}") from exc
    staged.names.clear()
    return deleted


def journal_record(staged: Staged) -> dict[str, object]:
    """What a recovery needs to finish or undo this restore: the tokens of its names."""
    return {"token": staged.token.decode(), "aside": staged.aside.decode(),
            "match": staged.match, "folder": str(staged.folder.resolve()),
            "names": [_pattern(staged.token).decode(), _pattern(staged.aside).decode()]}


def _pattern(token: bytes) -> bytes:
    """The SCAN pattern of every name made under ``token`` (staged or set aside)."""
    return STAGING + b"*:" + token + b":*"


def _named(conn: Any, token: bytes) -> dict[bytes, bytes]:
    """Key -> its name under ``token``, for every such name that exists."""
    found: dict[bytes, bytes] = {}
    for name in conn.scan_iter(match=_pattern(token), count=1000):
        head = name.find(b"}:" + token + b":")
        if head > 0:
            found[name[head + len(token) + 3:]] = name
    return found


def recover(url: str, record: dict[str, Any], *, forward: bool) -> str:
    """Finish (``forward``) or roll back the restore ``record`` describes, from whatever
    state a killed process left: a key whose staged copy still exists was not switched
    (its group's script never ran), one whose staged copy is gone was."""
    token, aside = str(record.get("token", "")).encode(), str(record.get("aside", "")).encode()
    conn = client(url)
    try:
        staged_names = _named(conn, token) if token else {}
        if forward:
            folder = Path(str(record["folder"]))
            staged = Staged(folder, url, conn, read_manifest(folder, STORE), load_entries(folder),
                            names=staged_names, token=token, aside=aside)
            if staged_names:
                switch(staged, resume=True)
            dropped = _delete(conn, list(_named(conn, aside).values())) if aside else 0
            return (("switched in" if staged_names else "already switched in")
                    + (f", {dropped} replaced keys dropped" if dropped else ""))
        _delete(conn, list(staged_names.values()))
        if record.get("phase") not in ("switching", "switched") or not aside:
            return "staged copy dropped"
        folder = Path(str(record["folder"]))
        restored = {_unb64(entry["key"]) for entry in load_entries(folder)}
        kept = _named(conn, aside)
        for key in sorted(restored | set(kept)):
            if key in staged_names:
                continue  # its group was never switched: the live key is the old one
            if key in kept:
                _node(conn, key).rename(kept[key], key)
            else:
                _node(conn, key).delete(key)
        return "previous keys put back"
    except RedisError as exc:
        raise StoreUnavailable(f"recovering the Redis restore failed: {exc}") from exc
    finally:
        conn.close()


def _delete(conn: Any, names: list[bytes]) -> int:
    deleted = 0
    for start in range(0, len(names), BATCH):
        pipe = conn.pipeline(transaction=False)
        for name in names[start : start + BATCH]:
            pipe.delete(name)
        deleted += sum(int(n) for n in pipe.execute())
    return deleted


def leftovers(url: str) -> list[str]:
    """Staged or set-aside keys of restores (``__platformdb_restore:...``), as one SCAN
    pattern per restore (and how many keys each holds)."""
    conn = client(url)
    try:
        tokens: dict[bytes, int] = defaultdict(int)
        for name in conn.scan_iter(match=STAGING + b"*", count=1000):
            head = name.find(b"}:")
            if head > 0:
                tokens[name[head + 2: head + 18]] += 1
        return [f"{_pattern(token).decode()} ({count} keys)"
                for token, count in sorted(tokens.items())]
    finally:
        conn.close()


def drop_leftovers(url: str, names: list[str]) -> None:
    conn = client(url)
    try:
        for name in names:
            pattern = name.split(" ", 1)[0].encode()
            if pattern.startswith(STAGING):
                _delete(conn, list(conn.scan_iter(match=pattern, count=1000)))
    finally:
        conn.close()


def restore(folder: Path, url: str, *, force: bool = False,
            verify: bool = True) -> RedisRestoreReport:
    """Stage, verify and switch: the target's scope becomes exactly the backup, or, on
    any failure, stays exactly as it was. (``verify`` is kept for the CLI's flag: the
    staged copy is always verified before anything is switched.)"""
    staged = stage(folder, url, force=force)
    try:
        mismatches = _verify(staged)
        if mismatches:
            discard(staged)
            raise CheckFailed(f"the staged Redis restore differs from the manifest "
                              f"({mismatches[0]}); nothing was changed")
        switch(staged)
        commit(staged)
    except BaseException:
        if staged.names:
            discard(staged)
        raise
    finally:
        staged.close()
    return RedisRestoreReport(staged.target, len(staged.entries), dict(staged.manifest.tables), [])


_verify = verify

"""One org in Redis: its keys by structure, its queued jobs (export, import), deletion.

Finding and deleting an org's keys is :mod:`platformdb.redis.tenant` (the org is
inside every key's hash tag; ``SCAN MATCH`` on every primary). What an export
keeps is the org's **queued jobs** — ready, delayed, running and dead — the only
Redis data that is not derived or disposable: sessions are credentials of this
deployment (the users sign in again), cache entries are rebuilt from
PostgreSQL, rate-limit windows are seconds-long counters, and pub/sub events
are not stored at all. See docs/TENANTS.md#what-redis-data-is-kept.

A job is one JSON line: ``{"queue", "state", "score", "fields"}``: its queue
(job type), its state, its sorted-set score (the not-before time of a delayed
job, in ms) and every field of its hash. An import writes each queue's jobs in
one ``MULTI``/``EXEC`` (a queue's keys share one slot). A running job comes back
ready, as a released one would: its lease belonged to a worker of the source.
Before anything is written every line is checked (:func:`check_jobs`): a queue
name of the queue family, a member, hash and payload of the archive's org.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis.client import SyncClient
from platformdb.redis.functions import translate
from platformdb.redis.keys import KeySpace, check_id, check_token
from platformdb.redis.tenant import SCAN_COUNT, delete_org, org_keys, purge_queue
from platformdb.stores.base import Org, Size, TenantPart, compare

KEPT = ("job",)
SKIPPED = ("session", "cache", "cachetag", "cachelock", "cacheidx", "ratelimit")
# family <- key (after the prefix); the org is the first id inside the hash tag
_FAMILY = re.compile(r"^(session|cache|cachetag|cachelock|cacheidx):\{([^:}]+):"
                     r"|^(ratelimit):\{([^}]+)\}"
                     r"|^queue:\{[^}]+\}:(job):([^:]+):")

__all__ = ["KEPT", "SKIPPED", "all_key_counts", "checksums", "delete_disposable", "delete_org",
           "export_jobs", "import_jobs", "job_queues", "key_counts", "purge_jobs"]


def key_counts(client: SyncClient, org: str, *, prefix: str = "") -> dict[str, int]:
    """How many keys of each structure ``org`` has (jobs: one key per job)."""
    return {family: len(names) for family, names in org_keys(client, org, prefix=prefix).items()}


def all_key_counts(client: SyncClient, *, prefix: str = "") -> dict[str, dict[str, int]]:
    """``{org: {structure: keys}}`` for every org with a key under ``prefix`` (one walk)."""
    found: dict[str, Counter[str]] = {}
    keys = KeySpace(prefix)
    redis: Any = client
    try:
        for raw in redis.scan_iter(match=f"{keys.prefix}*", count=SCAN_COUNT):
            match = _FAMILY.match(codec.text(raw)[len(keys.prefix):])
            if match is None:
                continue
            groups = [g for g in match.groups() if g is not None]
            found.setdefault(groups[1], Counter())[groups[0]] += 1
    except RedisError as exc:
        raise translate(exc) from exc
    return {org: dict(counter) for org, counter in found.items()}


def _members(redis: Any, queue: str, org: str) -> dict[str, tuple[str, float | None]]:
    """member -> (state, score) of ``org``'s jobs in one queue's lists and sets."""
    start = f"{org}:"
    names = queue_keys(queue)
    states: dict[str, tuple[str, float | None]] = {}
    for state, key in (("ready", names[0]), ("running", names[1]), ("dead", names[4])):
        for member in map(codec.text, redis.lrange(key, 0, -1)):
            if member.startswith(start):
                states[member] = (state, None)
    for member, score in redis.zrange(names[3], 0, -1, withscores=True):
        text = codec.text(member)
        if text.startswith(start):
            states[text] = ("delayed", float(score))
    return states


def queue_keys(ready: str) -> tuple[str, str, str, str, str, str, str]:
    """The seven keys of the queue whose ready list is ``ready`` (prefix included)."""
    return (ready, f"{ready}:processing", f"{ready}:claims", f"{ready}:delayed",
            f"{ready}:dead", f"{ready}:stats", f"{ready}:wake")


def _queue_of(job_key: str) -> str:
    return job_key[: job_key.index("}:job:") + 1]


def export_jobs(client: SyncClient, org: str, path: Path, *, prefix: str = "") -> int:
    """``org``'s queued jobs as JSON lines in ``path``; how many."""
    redis: Any = client
    jobs = org_keys(client, org, prefix=prefix)["job"]
    lines = []
    try:
        for ready in sorted({_queue_of(key) for key in jobs}):
            states = _members(redis, ready, org)
            for member, (state, score) in states.items():
                fields = {codec.text(k): codec.text(v) for k, v in
                          redis.hgetall(f"{ready}:job:{member}").items()}
                if not fields:
                    continue
                lines.append({"queue": ready[len(prefix):], "member": member, "state": state,
                              "score": score, "fields": fields})
    except RedisError as exc:
        raise translate(exc) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, sort_keys=True) + "\n")
    return len(lines)


def read_jobs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


STATES = ("ready", "delayed", "running", "dead")
_QUEUE = re.compile(r"^queue:\{([^{}]*)\}$")


def check_jobs(path: Path, org: str, where: str = "redis/jobs.jsonl") -> list[dict[str, Any]]:
    """The jobs of ``path``, each checked to be a well-formed job of ``org`` in a queue
    (never another key family); the first that is not refuses the archive, naming its
    line."""
    if not path.is_file():
        return []
    jobs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            problem = ""
            try:
                job = json.loads(line)
                problem = _job_problem(job, org)
            except ValueError as exc:
                problem = f"not JSON ({exc})"
            if problem:
                raise ValidationError(f"{where} line {number}: {problem}; refusing the whole "
                                      "archive (nothing was changed)")
            jobs.append(job)
    return jobs


def _job_problem(job: Any, org: str) -> str:
    """What is wrong with one job line ('' when nothing)."""
    if not isinstance(job, dict) or set(job) != {"queue", "member", "state", "score", "fields"}:
        return "not a job (keys queue, member, state, score, fields)"
    queue, member, fields = job["queue"], job["member"], job["fields"]
    found = _QUEUE.match(queue) if isinstance(queue, str) else None
    if found is None:
        return f"queue {queue!r} is not a queue name (queue:{{<type>}})"
    try:
        check_id(found.group(1), "job_type")
        owner, _, job_id = str(member).partition(":")
        check_token(job_id, "job_id")
    except ValidationError as exc:
        return str(exc)
    if owner != org or not isinstance(member, str):
        return f"job {member!r} is not of the archive's org {org}"
    if job["state"] not in STATES:
        return f"state {job['state']!r} is not one of {', '.join(STATES)}"
    score = job["score"]
    if job["state"] == "delayed" and not isinstance(score, int | float):
        return "a delayed job without a numeric score"
    if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in fields.items()):
        return "fields is not a map of strings"
    if fields.get("org_id") != org or fields.get("id") != job_id:
        return (f"job hash of org {fields.get('org_id')!r}, id {fields.get('id')!r} is not "
                f"{member!r} of the archive's org {org}")
    return _payload_problem(fields.get("payload", ""), org)


def _payload_problem(payload: str, org: str) -> str:
    """A payload naming an org (``org_id`` / ``orgId`` at its top level) names ``org``."""
    try:
        data = json.loads(payload)
    except ValueError:
        return ""  # not JSON: the worker dead-letters it; it names no org
    if isinstance(data, dict):
        for key in ("org_id", "orgId", "organization_id"):
            if key in data and str(data[key]) != org:
                return f"payload {key} {data[key]!r} is not the archive's org {org}"
    return ""


def import_jobs(client: SyncClient, jobs: list[dict[str, Any]], *, prefix: str = "") -> int:
    """Write ``jobs`` (from :func:`read_jobs`) under ``prefix``: one MULTI/EXEC per queue."""
    redis: Any = client
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_queue.setdefault(prefix + str(job["queue"]), []).append(job)
    written = 0
    try:
        for ready, items in sorted(by_queue.items()):
            names = queue_keys(ready)
            pipe: Any = redis.pipeline(transaction=True)
            # the list order of the export is newest first: push oldest first
            for job in reversed(items):
                pipe.hset(f"{ready}:job:{job['member']}", mapping=job["fields"])
                if job["state"] == "delayed":
                    pipe.zadd(names[3], {job["member"]: float(job["score"])})
                elif job["state"] == "dead":
                    pipe.lpush(names[4], job["member"])
                elif job["state"] == "running":
                    pipe.rpush(names[0], job["member"])  # released: claimed next
                else:
                    pipe.lpush(names[0], job["member"])
            pipe.lpush(names[6], 1)
            pipe.ltrim(names[6], 0, 63)
            pipe.execute()
            written += len(items)
    except RedisError as exc:
        raise translate(exc) from exc
    return written


def purge_jobs(client: SyncClient, org: str, queues: list[str], *, prefix: str = "") -> int:
    """Remove ``org``'s jobs from ``queues`` (the undo of :func:`import_jobs`), in bounded
    steps (:func:`platformdb.redis.tenant.purge_queue`)."""
    return sum(purge_queue(client, org, prefix + q)[0] for q in sorted(set(queues)))


def job_queues(client: SyncClient, org: str, *, prefix: str = "") -> list[str]:
    """The queues (``queue:{<type>}``, without the prefix) that hold jobs of ``org``."""
    return sorted({_queue_of(key)[len(prefix):]
                   for key in org_keys(client, org, prefix=prefix)["job"]})


def delete_disposable(client: SyncClient, org: str, *, prefix: str = "") -> int:
    """Delete ``org``'s keys an export does not keep (sessions, cache, rate limits)."""
    redis: Any = client
    names = [name for family, found in org_keys(client, org, prefix=prefix).items()
             if family in SKIPPED for name in found]
    try:
        pipe: Any = redis.pipeline(transaction=False)
        for name in names:
            pipe.unlink(name)  # one key per command: the keys may live in different slots
        return sum(int(n) for n in pipe.execute()) if names else 0
    except RedisError as exc:
        raise translate(exc) from exc


STAGING_KEYS = "__platformdb_restore:*"
"""Restores' staged and set-aside keys (:mod:`platformdb.stores.redis.backup`): each is
named ``__platformdb_restore:{<tag>}:<token>:<key>``, so an org's own keys carry its id."""


def staged_keys(client: SyncClient, org: str) -> list[str]:
    """Restores' staging keys whose original key is one of ``org``'s (its id in the name);
    the shared queue lists that hold several orgs' members are not among them."""
    redis: Any = client
    try:
        return sorted(codec.text(raw) for raw in redis.scan_iter(
            match=f"__platformdb_restore:*{check_id(org, 'org_id')}*", count=1000))
    except RedisError as exc:
        raise translate(exc) from exc


def _unlink(client: SyncClient, names: list[str]) -> None:
    redis: Any = client
    try:
        pipe: Any = redis.pipeline(transaction=False)
        for name in names:
            pipe.unlink(name)
        if names:
            pipe.execute()
    except RedisError as exc:
        raise translate(exc) from exc


def checksums(client: SyncClient, org: str, *, prefix: str = "") -> dict[str, str]:
    """A digest per structure of ``org``'s keys: names, values and, for jobs, state."""
    redis: Any = client
    digests = {}
    try:
        for family, names in org_keys(client, org, prefix=prefix).items():
            digest = hashlib.sha256()
            for name in names:  # without the prefix: the same org under another prefix
                digest.update(f"{name[len(prefix):]}\0{_value(redis, name)}\n".encode())
            if family == "job":
                for ready in sorted({_queue_of(n) for n in names}):
                    digest.update(repr(sorted(_members(redis, ready, org).items())).encode())
            digests[family] = f"{len(names)}:{digest.hexdigest()[:16]}"
    except RedisError as exc:
        raise translate(exc) from exc
    return digests


def _value(redis: Any, name: str) -> str:
    kind = codec.text(redis.type(name))
    if kind == "string":
        return codec.text(redis.get(name) or b"")
    if kind == "hash":
        return repr(sorted((codec.text(k), codec.text(v)) for k, v in redis.hgetall(name).items()))
    if kind == "list":
        return repr([codec.text(v) for v in redis.lrange(name, 0, -1)])
    if kind == "set":
        return repr(sorted(codec.text(v) for v in redis.smembers(name)))
    if kind == "zset":
        return repr([(codec.text(m), s) for m, s in redis.zrange(name, 0, -1, withscores=True)])
    return kind


# ------------------------------------------------------------------ the store's facet


class RedisTenant:
    """Orgs' keys and queued jobs in Redis (:class:`platformdb.stores.base.TenantData`);
    ``prefix``: the deployment's key prefix. ``schema_head``: the functions library's
    ledger (``head``, read by the caller that has the driver)."""

    unit = "keys"
    activity_label = ""

    def __init__(self, client: SyncClient, head: Any, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self._head = head

    def orgs(self) -> list[Org]:
        return []

    def find_org(self, ref: str) -> Org | None:
        return None

    def sizes(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, Size]]:
        if org is not None:
            held = {k: Size(v) for k, v in key_counts(self.client, str(org),
                                                       prefix=self.prefix).items() if v}
            return {org: held} if held else {}
        found: dict[uuid.UUID, dict[str, Size]] = {}
        for key, families in all_key_counts(self.client, prefix=self.prefix).items():
            try:
                found[uuid.UUID(key)] = {k: Size(v) for k, v in sorted(families.items())}
            except ValueError:
                continue  # not an org id: nothing of a tenant
        return found

    def activity(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime | date]:
        return {}

    def counts(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return key_counts(self.client, str(org), prefix=self.prefix)

    def checksums(self, org: uuid.UUID) -> dict[str, str]:
        return checksums(self.client, str(org), prefix=self.prefix)

    def schema_head(self) -> int:
        return int(self._head())

    def delete(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        before = key_counts(self.client, str(org), prefix=self.prefix)
        delete_org(self.client, str(org), prefix=self.prefix)
        return before

    def export(self, org: uuid.UUID, folder: Path) -> TenantPart:
        jobs = export_jobs(self.client, str(org), folder / "jobs.jsonl", prefix=self.prefix)
        return TenantPart({"jobs.jsonl": jobs},
                          {"format": "jsonl", "kept": list(KEPT), "skipped": list(SKIPPED)},
                          self.schema_head())

    def scratch_copies(self, org: uuid.UUID) -> dict[str, int]:
        found = staged_keys(self.client, str(org))
        return {STAGING_KEYS: len(found)} if found else {}

    def erase_scratch(self, org: uuid.UUID) -> dict[str, int]:
        found = staged_keys(self.client, str(org))
        _unlink(self.client, found)
        return {STAGING_KEYS: len(found)} if found else {}

    def drop_staging(self, names: list[str] | None) -> list[str]:
        return []  # an import holds its jobs in memory until it switches

    def stage_import(self, org: uuid.UUID, folder: Path, expected: dict[str, int], *,
                     info: dict[str, Any], saved: Path | None) -> RedisImport:
        jobs = check_jobs(folder / "jobs.jsonl", str(org))
        if len(jobs) != expected.get("jobs", 0):
            raise ValidationError("redis/jobs.jsonl does not hold the jobs its manifest counts")
        return RedisImport(self.client, str(org), jobs, expected, saved, self.prefix)


class RedisImport:
    """The archive's jobs, read; switching writes them into their queues."""

    store = "redis"
    last = False

    def __init__(self, client: SyncClient, org: str, jobs: list[dict[str, Any]],
                 expected: dict[str, int], saved: Path | None, prefix: str) -> None:
        self.client = client
        self.org = org
        self.jobs = jobs
        self.expected = expected
        self.saved = saved
        self.prefix = prefix
        self.loaded: dict[str, int] = {}

    def switch(self) -> None:
        try:
            if self.saved is not None:
                purge_jobs(self.client, self.org,
                           job_queues(self.client, self.org, prefix=self.prefix),
                           prefix=self.prefix)
            self.loaded = {"jobs": import_jobs(self.client, self.jobs, prefix=self.prefix)}
            compare("redis", self.loaded, self.expected)
        except BaseException:
            self.undo()
            raise

    def undo(self) -> None:
        """Take out the jobs the import wrote; put a replaced org's jobs back."""
        purge_jobs(self.client, self.org, [str(j["queue"]) for j in self.jobs],
                   prefix=self.prefix)
        if self.saved is not None:
            import_jobs(self.client, read_jobs(self.saved / "jobs.jsonl"), prefix=self.prefix)

    def commit(self) -> None:
        if self.saved is not None:  # the replaced org's sessions and cache belong to its old data
            delete_disposable(self.client, self.org, prefix=self.prefix)

    def discard(self) -> None:
        """Nothing was written yet."""

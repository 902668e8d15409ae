"""Everything one org holds in Redis: find it, and delete it (tenant lifecycle).

Every tenant-owned key carries its org (see :meth:`KeySpace.org_patterns`
for the ``SCAN`` pattern of each family), so one org's keys are found by
scanning, on every primary of a Cluster: sessions, cache entries (values,
tags, locks, indexes), rate-limit windows and queued jobs. One ``SCAN`` pass
matches every family at once (``*<org>[:}]*``, then sorted by family here).

Queue lists are shared by every org. Deleting an org's jobs walks each queue
that holds some in **bounded steps** (``queue_purge_org``: at most
``PURGE_CHUNK`` members per call, the caller repeating with a cursor), so no
call blocks the server for longer than one step, whatever the size of the org
or of the queue; other clients are served between the steps.

These are administrator operations: run them with the ``platformdb-admin``
login of ``acl_users.redis`` (it may ``SCAN``, delete and run the admin-only
``queue_purge_org``), never a service's. Stop the org's traffic first (disable
it in PostgreSQL): keys written while the scan runs may be missed.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis._fcall_async import fcall
from platformdb.redis.client import AsyncClient
from platformdb.redis.functions import library, translate
from platformdb.redis.keys import KeySpace, check_id

SCAN_COUNT = 1000
BATCH = 500
PURGE_CHUNK = 1000
PURGE_MAX = 5000
# the order matters: a job whose hash is gone only moves from delayed to ready
PURGE_ORDER = ("delayed", "ready", "processing", "dead")


async def org_keys(client: AsyncClient, org_id: str, *, prefix: str = "") -> dict[str, list[str]]:
    """Every key of ``org_id`` under ``prefix``, by family (sorted); empty families too."""
    redis: Any = client
    keys = KeySpace(prefix)
    patterns = keys.org_patterns(org_id)
    found: dict[str, set[str]] = {family: set() for family in patterns}
    # one pass for every family: each pattern has the org followed by ":" or "}"
    match = f"{keys.prefix}*{check_id(org_id, 'org_id')}[:}}]*"
    try:
        async for raw in redis.scan_iter(match=match, count=SCAN_COUNT):
            name = codec.text(raw)
            for family, pattern in patterns.items():
                if fnmatchcase(name, pattern):
                    found[family].add(name)
                    break
    except RedisError as exc:
        raise translate(exc) from exc
    return {family: sorted(names) for family, names in found.items()}


def queue_keys(ready: str) -> list[str]:
    """The seven keys of the queue whose ready list is ``ready`` (prefix included) and
    its ``queueadmin:`` key: what ``queue_purge_org`` takes."""
    brace = ready.find("{")
    if brace < 6 or ready[brace - 6 : brace] != "queue:" or not ready.endswith("}"):
        raise ValidationError(f"not the ready list of a queue: {ready!r}")
    return [ready, f"{ready}:processing", f"{ready}:claims", f"{ready}:delayed",
            f"{ready}:dead", f"{ready}:stats", f"{ready}:wake",
            f"{ready[: brace - 6]}queueadmin:{ready[brace:]}"]


async def purge_queue(
    client: AsyncClient, org_id: str, ready: str, *, count: int = PURGE_CHUNK
) -> tuple[int, int]:
    """Delete every job of ``org_id`` from the queue whose ready list is ``ready``
    (prefix included), ``count`` members per call at most; (jobs deleted, calls)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= PURGE_MAX:
        raise ValidationError(f"purge count must be an integer in 1..{PURGE_MAX}, got {count!r}")
    check_id(org_id, "org_id")
    purge = library()["queue_purge_org"]
    names = queue_keys(ready)
    deleted = steps = 0
    for structure in PURGE_ORDER:
        cursor = 0
        while cursor >= 0:
            reply = await fcall(client, purge, names, [org_id, structure, cursor, count])
            cursor, gone = int(reply[0]), int(reply[1])
            deleted += gone
            steps += 1
    return deleted, steps


async def delete_org(client: AsyncClient, org_id: str, *, prefix: str = "") -> int:
    """Delete every key of ``org_id`` under ``prefix``; how many were deleted."""
    keys = KeySpace(prefix)
    found = await org_keys(client, org_id, prefix=prefix)
    deleted = 0
    start = f"{keys.prefix}queue:{{"
    jobs = found.pop("job")
    job_types = sorted({name[len(start):].split("}", 1)[0] for name in jobs})
    for job_type in job_types:
        deleted += (await purge_queue(client, org_id, keys.queue(job_type)[0]))[0]
    names = [name for family in found.values() for name in family]
    if deleted < len(jobs):
        # a job the walk did not meet (it moved between structures meanwhile): its hash
        # goes now, and a member left in a list is dropped by the next claim
        names += jobs
    redis: Any = client
    try:
        for i in range(0, len(names), BATCH):
            pipe: Any = redis.pipeline(transaction=False)
            for name in names[i : i + BATCH]:
                pipe.unlink(name)  # one key per command: the keys may live in different slots
            deleted += sum(int(n) for n in await pipe.execute())
    except RedisError as exc:
        raise translate(exc) from exc
    return deleted

# Generated from tenant_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
"""Everything one org holds in Redis: find it, and delete it (tenant lifecycle).

Every tenant-owned key carries its org (see :meth:`KeySpace.org_patterns`
for the ``SCAN`` pattern of each family), so one org's keys are found by
scanning for those patterns, on every primary of a Cluster: sessions, cache
entries (values, tags, locks, indexes), rate-limit windows and queued jobs.
Queue lists are shared by every org; deleting an org's jobs also takes their
members out of those lists (``queue_purge_org``, one atomic call per queue).

These are administrator operations: run them with a connection allowed to
``SCAN`` and delete (``platformdb-admin`` in ``acl_users.redis``), never a
service's. Stop the org's traffic first (disable it in PostgreSQL): keys
written while the scan runs may be missed.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from platformdb.redis import codec
from platformdb.redis._fcall import fcall
from platformdb.redis.client import SyncClient
from platformdb.redis.functions import library, translate
from platformdb.redis.keys import KeySpace

SCAN_COUNT = 1000
BATCH = 500


def org_keys(client: SyncClient, org_id: str, *, prefix: str = "") -> dict[str, list[str]]:
    """Every key of ``org_id`` under ``prefix``, by family (sorted); empty families too."""
    redis: Any = client
    found: dict[str, list[str]] = {}
    try:
        for family, pattern in KeySpace(prefix).org_patterns(org_id).items():
            names = {codec.text(k) for k in redis.scan_iter(match=pattern, count=SCAN_COUNT)}
            found[family] = sorted(names)
    except RedisError as exc:
        raise translate(exc) from exc
    return found


def delete_org(client: SyncClient, org_id: str, *, prefix: str = "") -> int:
    """Delete every key of ``org_id`` under ``prefix``; how many were deleted."""
    keys = KeySpace(prefix)
    found = org_keys(client, org_id, prefix=prefix)
    deleted = 0
    start = f"{keys.prefix}queue:{{"
    job_types = sorted({name[len(start):].split("}", 1)[0] for name in found.pop("job")})
    purge = library()["queue_purge_org"]
    for job_type in job_types:
        deleted += int(fcall(client, purge, list(keys.queue(job_type)), [org_id]))
    names = [name for family in found.values() for name in family]
    redis: Any = client
    try:
        for i in range(0, len(names), BATCH):
            pipe: Any = redis.pipeline(transaction=False)
            for name in names[i : i + BATCH]:
                pipe.unlink(name)  # one key per command: the keys may live in different slots
            deleted += sum(int(n) for n in pipe.execute())
    except RedisError as exc:
        raise translate(exc) from exc
    return deleted

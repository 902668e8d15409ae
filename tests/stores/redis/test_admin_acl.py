"""The documented ACL logins and the bounded tenant operations: only the admin login may
purge a queue, and it can do everything a tenant export, delete and import needs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.errors import StoreUnavailable, ValidationError
from platformdb.redis import Cache, JobQueue, SessionStore, library
from platformdb.redis._fcall import fcall
from platformdb.redis.tenant import purge_queue, queue_keys
from platformdb.stores.redis.tenant import RedisTenant, checksums, key_counts
from tests.stores.redis.test_acl import acl_users, as_user  # noqa: F401 - the fixture

Users = tuple[str, dict[str, str]]


def test_a_service_login_cannot_purge_another_orgs_jobs_the_admin_can(
    redis_url: str, redis_client: Redis, redis_prefix: str, acl_users: Users,  # noqa: F811
) -> None:
    suffix, passwords = acl_users
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    for org in ("org_1", "org_2"):
        for i in range(5):
            queue.enqueue({"n": i}, org_id=org)
    service = as_user(redis_url, f"platformdb-queue{suffix}", passwords["QUEUE"])
    admin = as_user(redis_url, f"platformdb-admin{suffix}", passwords["ADMIN"])
    try:
        ready = queue.queue_keys[0]
        with pytest.raises(StoreUnavailable, match="refused"):  # NOPERM on queueadmin:{etl}
            purge_queue(service, "org_2", ready)
        purge = library()["queue_purge_org"]
        with pytest.raises(ValidationError, match="queueadmin"):  # a key it may touch instead
            fcall(service, purge, [*queue.queue_keys, f"{ready}:admin"],
                  ["org_2", "ready", 0, 100])
        assert queue.stats().ready == 10  # nothing changed
        # the service login still runs its own functions
        assert JobQueue(service, "etl", prefix=redis_prefix).claim(1)
        assert purge_queue(admin, "org_2", ready) == (5, 4)
        left = service.lrange(ready, 0, -1) + service.lrange(queue_keys(ready)[1], 0, -1)
        assert len(left) == 5 and all(m.startswith("org_1:") for m in left)
    finally:
        service.close()
        admin.close()


def test_service_logins_run_the_bounded_steps_of_their_structures(
    redis_url: str, redis_client: Redis, redis_prefix: str, acl_users: Users,  # noqa: F811
) -> None:
    suffix, passwords = acl_users
    sessions = as_user(redis_url, f"platformdb-sessions{suffix}", passwords["SESSIONS"])
    cache = as_user(redis_url, f"platformdb-cache{suffix}", passwords["CACHE"])
    try:
        store = SessionStore(sessions, prefix=redis_prefix, max_sessions=3)
        for _ in range(5):
            store.create("user_1", org_id="org_1")
        store.create("user_1", org_id="org_2")
        assert len(store.sessions("user_1", org_id="org_1")) == 3  # capped when written
        assert store.revoke_all("user_1", org_id="org_1") == 3
        assert len(store.sessions("user_1", org_id="org_2")) == 1  # another org: untouched
        values = Cache(cache, "campaign", prefix=redis_prefix)
        for org in ("org_1", "org_2"):
            for i in range(3):
                values.set(f"r:{i}", i, org_id=org, tags=["camp:1"])
        assert values.invalidate_tags("camp:1", org_id="org_1") == 3
        assert values.delete_prefix("r:", org_id="org_2") == 3
    finally:
        sessions.close()
        cache.close()


def test_the_admin_login_exports_deletes_and_imports_a_tenants_jobs(
    tmp_path: Path, redis_url: str, redis_client: Redis, redis_prefix: str,
    acl_users: Users,  # noqa: F811
) -> None:
    suffix, passwords = acl_users
    org, other = uuid.uuid4(), uuid.uuid4()
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix, max_attempts=1)
    for owner in (org, other):
        queue.enqueue({"n": 1}, org_id=str(owner), job_id="ready")
        queue.enqueue({"n": 2}, org_id=str(owner), job_id="later", delay=600)
    reports = JobQueue(redis_client, "reports", prefix=redis_prefix, max_attempts=1)
    reports.enqueue({"n": 3}, org_id=str(org), job_id="failed")
    [job] = reports.claim(count=1)
    assert reports.retry(job, "boom") == "dead"
    reports.enqueue({}, org_id=str(org))
    SessionStore(redis_client, prefix=redis_prefix).create("user_1", org_id=str(org))
    admin = as_user(redis_url, f"platformdb-admin{suffix}", passwords["ADMIN"])
    try:
        tenant = RedisTenant(admin, lambda: library().version, redis_prefix)
        before = checksums(admin, str(org), prefix=redis_prefix)
        theirs = checksums(admin, str(other), prefix=redis_prefix)
        part = tenant.export(org, tmp_path / "redis")
        assert part.files == {"jobs.jsonl": 4}
        assert tenant.delete(org)["job"] == 4
        assert not any(key_counts(admin, str(org), prefix=redis_prefix).values())
        # import into the emptied org, then again over itself (replace: purge first)
        for saved in (None, tmp_path / "redis"):
            staged = tenant.stage_import(org, tmp_path / "redis", {"jobs": 4}, info={},
                                         saved=saved)
            staged.switch()
            staged.commit()
        after = checksums(admin, str(org), prefix=redis_prefix)
        assert after["job"] == before["job"]
        assert checksums(admin, str(other), prefix=redis_prefix) == theirs
    finally:
        admin.close()

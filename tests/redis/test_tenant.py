"""Everything of one org: found by its keys' scan patterns, deleted, and no other org's."""

from __future__ import annotations

import asyncio
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.redis import (
    Cache,
    JobQueue,
    Limit,
    RateLimiter,
    SessionStore,
    connect_async,
    delete_org,
    org_keys,
)
from platformdb.redis.tenant_async import org_keys as org_keys_async

IDS = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=10)


def fill(client: Redis, prefix: str, org: str, user: str = "user_1") -> None:
    """One of everything an org can hold."""
    SessionStore(client, prefix=prefix).create(user, org_id=org)
    cache = Cache(client, "campaign", prefix=prefix)
    cache.set("1", {"v": 1}, org_id=org, tags=["camp:1"])
    RateLimiter(client, Limit(5, 60), prefix=prefix).allow(org, "dv360")
    queue = JobQueue(client, "etl", prefix=prefix, max_attempts=1)
    queue.enqueue({"n": 1}, org_id=org, job_id="ready")
    queue.enqueue({"n": 2}, org_id=org, job_id="later", delay=60)
    queue.enqueue({"n": 3}, org_id=org, job_id="running")
    JobQueue(client, "reports", prefix=prefix).enqueue({"n": 4}, org_id=org, job_id="other")


def test_org_keys_lists_every_family_of_one_org(redis_client: Redis, redis_prefix: str) -> None:
    fill(redis_client, redis_prefix, "org_1")
    fill(redis_client, redis_prefix, "org_10")  # an org id that extends org_1
    Cache(redis_client, "catalog", platform_wide=True, prefix=redis_prefix).set("x", 1)
    found = org_keys(redis_client, "org_1", prefix=redis_prefix)
    p = redis_prefix
    assert found == {
        "session": sorted([f"{p}session:{{org_1:user_1}}"] + [
            k for k in redis_client.scan_iter(match=f"{p}session:{{org_1:user_1}}:*")]),
        "cache": [f"{p}cache:{{org_1:campaign}}:1"],
        "cachetag": [f"{p}cachetag:{{org_1:campaign}}:camp:1"],
        "cachelock": [],
        "cacheidx": [f"{p}cacheidx:{{org_1:campaign}}"],
        "ratelimit": [f"{p}ratelimit:{{org_1}}:{{dv360}}"],
        "job": sorted([f"{p}queue:{{etl}}:job:org_1:{j}" for j in ("later", "ready", "running")]
                      + [f"{p}queue:{{reports}}:job:org_1:other"]),
    }


def test_delete_org_removes_every_key_and_queue_member_of_one_org_and_nothing_else(
    redis_client: Redis, redis_prefix: str
) -> None:
    fill(redis_client, redis_prefix, "org_1")
    fill(redis_client, redis_prefix, "org_2")
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix, max_attempts=1)
    claimed = [j for j in queue.claim(count=4) if j.org_id == "org_1"]
    before = {name for family in org_keys(redis_client, "org_2", prefix=redis_prefix).values()
              for name in family}
    deleted = delete_org(redis_client, "org_1", prefix=redis_prefix)
    assert deleted == 2 + 3 + 1 + 4  # session + index, cache value/tag/index, window, 4 jobs
    assert all(not names for names in org_keys(redis_client, "org_1",
                                               prefix=redis_prefix).values())
    after = {name for family in org_keys(redis_client, "org_2", prefix=redis_prefix).values()
             for name in family}
    assert after == before
    members = (redis_client.lrange(queue.queue_keys[0], 0, -1)
               + redis_client.lrange(queue.queue_keys[1], 0, -1)
               + redis_client.zrange(queue.queue_keys[2], 0, -1)
               + redis_client.zrange(queue.queue_keys[3], 0, -1))
    assert members and not any(m.startswith("org_1:") for m in members)
    for job in claimed:  # a worker still running a purged job has lost its lease
        assert queue.ack(job) is False and queue.extend(job) is False


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org_a=IDS, org_b=IDS)
def test_deleting_one_org_never_touches_another(
    redis_client: Redis, redis_prefix: str, org_a: str, org_b: str
) -> None:
    if org_a == org_b:
        return
    fill(redis_client, redis_prefix, org_a)
    fill(redis_client, redis_prefix, org_b)
    theirs = org_keys(redis_client, org_b, prefix=redis_prefix)
    assert delete_org(redis_client, org_a, prefix=redis_prefix) == 10
    assert org_keys(redis_client, org_b, prefix=redis_prefix) == theirs
    assert delete_org(redis_client, org_b, prefix=redis_prefix) == 10
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*:job:*")) == []


def test_the_async_org_keys_finds_the_same_keys(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    fill(redis_client, redis_prefix, "org_1")

    async def main() -> dict[str, list[str]]:
        client = connect_async(redis_url)
        try:
            return await org_keys_async(client, "org_1", prefix=redis_prefix)
        finally:
            await client.aclose()

    assert asyncio.run(main()) == org_keys(redis_client, "org_1", prefix=redis_prefix)

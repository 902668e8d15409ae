"""Every script on a real 3-master Redis Cluster (started from the embedded binaries)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from platformdb.redis import (
    AsyncRateLimiter,
    Cache,
    EventBus,
    JobQueue,
    Limit,
    RateLimiter,
    SessionStore,
    connect,
    connect_async,
    load_all,
    registry,
)
from tests.redis.helpers import wait_until
from tests.redis.valkey_cluster import Cluster

pytestmark = pytest.mark.slow
ORGS = [f"org_{i}" for i in range(12)]


@pytest.fixture
def cluster_client(redis_cluster: Cluster) -> Iterator[RedisCluster]:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


def test_the_cluster_has_three_masters_and_orgs_spread_over_them(
    cluster_client: RedisCluster,
) -> None:
    assert len(cluster_client.get_primaries()) == 3
    limiter = RateLimiter(cluster_client, Limit(1, 1))
    keys = [limiter.keys.ratelimit(org, "dv360") for org in ORGS]
    nodes = {cluster_client.get_node_from_key(key).name for key in keys}
    assert len(nodes) >= 2
    assert load_all(cluster_client) == {s.name: s.sha for s in registry()}


def test_rate_limiter_on_cluster(cluster_client: RedisCluster, cluster_prefix: str) -> None:
    limiter = RateLimiter(cluster_client, Limit(3, 30), prefix=cluster_prefix)
    for org in ORGS:
        assert sum(limiter.allow(org, "dv360").allowed for _ in range(5)) == 3
    # one pipeline fanned out over the nodes
    decisions = limiter.allow_many([(org, "ttd") for org in ORGS for _ in range(4)])
    assert sum(d.allowed for d in decisions) == 3 * len(ORGS)
    # NOSCRIPT on every node after a flush: reloaded transparently, single and pipelined
    cluster_client.script_flush()
    assert not limiter.allow(ORGS[0], "dv360").allowed
    cluster_client.script_flush()
    assert sum(d.allowed for d in limiter.allow_many([(o, "ttv") for o in ORGS])) == len(ORGS)


def test_async_rate_limiter_on_cluster(redis_cluster: Cluster, cluster_prefix: str) -> None:
    async def main() -> int:
        client = connect_async(redis_cluster.url)
        limiter = AsyncRateLimiter(client, Limit(2, 30), prefix=cluster_prefix)
        try:
            single = [await limiter.allow(org, "dv360") for org in ORGS for _ in range(3)]
            batch = await limiter.allow_many([(org, "ttd") for org in ORGS for _ in range(3)])
        finally:
            await client.aclose()
        return sum(d.allowed for d in single + batch)

    assert asyncio.run(main()) == 2 * 2 * len(ORGS)


def test_sessions_on_cluster(cluster_client: RedisCluster, cluster_prefix: str) -> None:
    store = SessionStore(cluster_client, idle_ttl=30, prefix=cluster_prefix)
    users = [f"user_{i}" for i in range(8)]
    created = {u: [store.create(u, "org_1").session_id for _ in range(3)] for u in users}
    assert store.get(users[0], created[users[0]][0]) is not None
    assert store.revoke(users[0], created[users[0]][0])
    assert store.revoke_all(users[1]) == 3
    assert store.sessions(users[1]) == []
    for user in users[2:]:
        assert sorted(store.sessions(user)) == sorted(created[user])


def test_queue_on_cluster(cluster_client: RedisCluster, cluster_prefix: str) -> None:
    queues = [
        JobQueue(cluster_client, t, max_attempts=2, backoff=0, prefix=cluster_prefix)
        for t in ("etl", "notifications", "reports")
    ]
    for queue in queues:
        queue.enqueue_many([("org_1", {"n": n}) for n in range(20)])
        jobs = queue.claim(count=20)
        assert len(jobs) == 20
        failing = jobs[0]
        assert all(queue.ack(j) for j in jobs[1:])
        assert queue.retry(failing, "boom") == "retried"
        again = queue.claim(visibility=0.05)[0]
        assert again.attempt == 2
        assert wait_until(lambda q=queue: q.requeue_expired() == (0, 1), timeout=2)
        stats = queue.stats()
        assert (stats.ready, stats.processing, stats.dead, stats.counters["acked"]) == (0, 0, 1, 19)


def test_cache_and_events_on_cluster(
    redis_cluster: Cluster, cluster_client: RedisCluster, cluster_prefix: str
) -> None:
    cache = Cache(cluster_client, "campaign", prefix=cluster_prefix)
    for i in range(10):
        cache.set(str(i), i, tags=["org:1" if i % 2 else "org:2"])
    assert cache.invalidate_tags("org:1") == 5
    assert cache.get_or_compute("0", lambda: -1) == 0
    assert cache.delete_prefix("") == 5

    listener = connect(redis_cluster.url)
    try:
        with EventBus(listener, prefix=cluster_prefix).subscribe("org_1") as sub:
            bus = EventBus(cluster_client, prefix=cluster_prefix)
            got = None
            for _ in range(20):  # the shard subscription settles asynchronously
                bus.publish("org_2", "noise")
                bus.publish("org_1", "campaign.updated", {"id": 1})
                got = sub.get(timeout=0.1)
                if got is not None:
                    break
            assert got is not None and got.org_id == "org_1" and got.data == {"id": 1}
    finally:
        listener.close()

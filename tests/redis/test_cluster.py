"""Every structure on a real 3-master Redis Cluster (started from the embedded binaries).

The functions library is loaded on every primary (``migrate up`` does the
same through the Redis driver); every call routes by its keys' hash tag.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from redis.client import Redis
from redis.cluster import RedisCluster

from platformdb.redis import (
    AsyncJobQueue,
    AsyncRateLimiter,
    AsyncWorker,
    Cache,
    EventBus,
    FunctionsNotLoaded,
    Job,
    JobQueue,
    Limit,
    RateLimiter,
    SessionStore,
    Worker,
    connect,
    connect_async,
    delete_org,
    functions,
    library,
    org_keys,
)
from tests.redis.valkey_cluster import Cluster

pytestmark = pytest.mark.slow
ORGS = [f"org_{i}" for i in range(12)]


@pytest.fixture
def cluster_client(redis_cluster: Cluster) -> Iterator[RedisCluster]:
    client = connect(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    functions.load(client)
    yield client
    client.close()


def test_the_library_is_on_every_primary_and_orgs_spread_over_them(
    cluster_client: RedisCluster,
) -> None:
    assert len(cluster_client.get_primaries()) == 3
    nodes = functions.on_server(cluster_client)
    assert len(nodes) == 3 and {n.checksum for n in nodes} == {library().checksum}
    limiter = RateLimiter(cluster_client, Limit(1, 1))
    keys = [limiter.keys.ratelimit(org, "dv360") for org in ORGS]
    assert len({cluster_client.get_node_from_key(key).name for key in keys}) >= 2


def test_a_primary_without_the_library_refuses_calls_that_land_on_it(
    cluster_client: RedisCluster, cluster_prefix: str
) -> None:
    limiter = RateLimiter(cluster_client, Limit(3, 30), prefix=cluster_prefix)
    victim = cluster_client.get_node_from_key(limiter.keys.ratelimit("org_1", "dv360"))
    node = Redis(host=victim.host, port=victim.port)
    try:
        node.function_flush()
        assert {n.checksum for n in functions.on_server(cluster_client)} == {
            library().checksum, None}
        with pytest.raises(FunctionsNotLoaded):
            limiter.allow("org_1", "dv360")
    finally:
        functions.load(cluster_client)
        node.close()
    assert limiter.allow("org_1", "dv360").allowed


def test_rate_limiter_on_cluster(cluster_client: RedisCluster, cluster_prefix: str) -> None:
    limiter = RateLimiter(cluster_client, Limit(3, 30), prefix=cluster_prefix)
    for org in ORGS:
        assert sum(limiter.allow(org, "dv360").allowed for _ in range(5)) == 3
    # one pipeline fanned out over the nodes
    decisions = limiter.allow_many([(org, "ttd") for org in ORGS for _ in range(4)])
    assert sum(d.allowed for d in decisions) == 3 * len(ORGS)


def test_async_rate_limiter_on_cluster(redis_cluster: Cluster, cluster_prefix: str,
                                       cluster_client: RedisCluster) -> None:
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
    created = {u: [store.create(u, org_id="org_1") for _ in range(3)] for u in users}
    first = created[users[0]][0]
    assert store.get(users[0], first.session_id, org_id="org_1") is not None
    assert store.get(users[0], first.session_id, org_id="org_1", touch=False) is not None
    assert store.get(users[0], first.session_id, org_id="org_2") is None
    assert store.revoke(users[0], first.session_id, org_id="org_1")
    assert store.revoke_all(users[1], org_id="org_1") == 3
    assert store.sessions(users[1], org_id="org_1") == []
    for user in users[2:]:
        assert sorted(store.sessions(user, org_id="org_1")) == sorted(
            s.handle for s in created[user])


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
        again = queue.claim()[0]
        assert again.attempt == 2 and queue.extend(again)
        cluster_client.zadd(queue.queue_keys[2], {f"org_1:{again.id}": 0}, xx=True)
        assert queue.requeue_expired() == (0, 1)
        stats = queue.stats()
        assert (stats.ready, stats.processing, stats.dead) == (0, 0, 1)
        assert stats.counters["acked"] == 19
        assert queue.wait_for_jobs(0.05) in (True, False)  # BLPOP routes by its one key


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_workers_block_and_renew_leases_on_cluster(
    kind: str, redis_cluster: Cluster, cluster_client: RedisCluster, cluster_prefix: str
) -> None:
    queue = JobQueue(cluster_client, "etl", visibility_timeout=0.3, prefix=cluster_prefix)
    for n in range(5):
        queue.enqueue({"n": n}, org_id=f"org_{n}")
    done: list[int] = []

    def slow(job: Job) -> None:
        if job.payload["n"] == 0:
            time.sleep(0.8)  # longer than a lease: renewed, run once
        done.append(job.payload["n"])

    if kind == "sync":
        worker = Worker(queue, slow, heartbeat=0.1, block_timeout=0.2)
        thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 5})
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive()
    else:
        async def main() -> None:
            client = connect_async(redis_cluster.url)
            loop = asyncio.get_running_loop()

            async def handle(job: Job) -> None:
                await loop.run_in_executor(None, slow, job)

            aqueue = AsyncJobQueue(client, "etl", visibility_timeout=0.3, prefix=cluster_prefix)
            await AsyncWorker(aqueue, handle, heartbeat=0.1, block_timeout=0.2).run(max_jobs=5)
            await client.aclose()

        asyncio.run(main())
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert queue.stats().counters["acked"] == 5 and "requeued" not in queue.stats().counters


def test_cache_and_events_on_cluster(
    redis_cluster: Cluster, cluster_client: RedisCluster, cluster_prefix: str
) -> None:
    cache = Cache(cluster_client, "campaign", prefix=cluster_prefix)
    for i in range(10):
        cache.set(str(i), i, org_id="org_1", tags=["camp:1" if i % 2 else "camp:2"])
    assert cache.invalidate_tags("camp:1", org_id="org_1") == 5
    assert cache.get_or_compute("0", lambda: -1, org_id="org_1") == 0
    assert cache.get("0", org_id="org_1") == 0  # FCALL_RO
    assert cache.delete_prefix("", org_id="org_1") == 5

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


def test_an_orgs_keys_are_found_and_deleted_on_every_primary(
    cluster_client: RedisCluster, cluster_prefix: str
) -> None:
    for org in ORGS[:6]:
        SessionStore(cluster_client, prefix=cluster_prefix).create("user_1", org_id=org)
        Cache(cluster_client, "campaign", prefix=cluster_prefix).set("1", 1, org_id=org)
        RateLimiter(cluster_client, Limit(5, 60), prefix=cluster_prefix).allow(org, "dv360")
        JobQueue(cluster_client, "etl", prefix=cluster_prefix).enqueue({}, org_id=org)
    found = org_keys(cluster_client, "org_3", prefix=cluster_prefix)
    names = [name for family in found.values() for name in family]
    assert len(names) == 6 and all("org_3" in name for name in names)
    nodes = {cluster_client.get_node_from_key(name).name for o in ORGS[:6]
             for family in org_keys(cluster_client, o, prefix=cluster_prefix).values()
             for name in family}
    assert len(nodes) >= 2  # the orgs' keys really are spread over the primaries
    assert delete_org(cluster_client, "org_3", prefix=cluster_prefix) == 6
    assert all(not keys for keys in org_keys(cluster_client, "org_3",
                                             prefix=cluster_prefix).values())
    assert len(org_keys(cluster_client, "org_4", prefix=cluster_prefix)["session"]) == 2
    assert JobQueue(cluster_client, "etl", prefix=cluster_prefix).stats().ready == 5

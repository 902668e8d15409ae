"""The cache: per-org scopes, TTLs, tags, prefix deletion by index, stampede protection."""

from __future__ import annotations

import asyncio
import string
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncCache, Cache, connect, connect_async
from tests.redis.helpers import wait_until

CALLERS = 20
IDS = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
KEYS = st.text(alphabet=string.ascii_letters + string.digits + ":._-", min_size=1, max_size=12)


def test_set_get_and_expiry(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", ttl=0.3, prefix=redis_prefix)
    cache.set("123", {"id": "123", "name": "Campaign"}, org_id="org_456")
    # the spec's cache:campaign:123, with the org and the namespace as hash tag
    raw = redis_client.get(f"{redis_prefix}cache:{{org_456:campaign}}:123")
    assert raw == '{"id":"123","name":"Campaign"}'
    assert cache.get("123", org_id="org_456") == {"id": "123", "name": "Campaign"}
    assert cache.get("missing", "fallback", org_id="org_456") == "fallback"
    assert wait_until(lambda: cache.get("123", org_id="org_456") is None, timeout=3)


def test_a_cache_is_per_org_unless_made_platform_wide(
    redis_client: Redis, redis_prefix: str
) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    with pytest.raises(ValidationError, match="per org"):
        cache.set("1", "x")
    with pytest.raises(ValidationError, match="per org"):
        cache.get("1")
    catalog = Cache(redis_client, "catalog", platform_wide=True, prefix=redis_prefix)
    catalog.set("dv360", {"name": "Display & Video 360"})
    assert redis_client.exists(f"{redis_prefix}cache:{{catalog}}:dv360") == 1
    assert catalog.get("dv360") == {"name": "Display & Video 360"}
    with pytest.raises(ValidationError, match="platform-wide"):
        catalog.get("dv360", org_id="org_1")
    # a platform-wide namespace and an org's namespace of the same name never meet
    Cache(redis_client, "catalog", prefix=redis_prefix).set("dv360", "mine", org_id="org_1")
    assert catalog.get("dv360") == {"name": "Display & Video 360"}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org_a=IDS, org_b=IDS, key=KEYS)
def test_one_org_never_reaches_another_orgs_entries_under_the_same_key(
    redis_client: Redis, redis_prefix: str, org_a: str, org_b: str, key: str
) -> None:
    if org_a == org_b:
        return
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set(key, "theirs", org_id=org_b, tags=["t"])
    assert cache.get(key, org_id=org_a) is None
    assert cache.get(key, org_id=org_a, allow_stale=True) is None
    cache.set(key, "mine", org_id=org_a, tags=["t"])
    assert cache.invalidate_tags("t", org_id=org_a) == 1
    assert cache.delete(key, org_id=org_a) == 0
    assert cache.delete_prefix("", org_id=org_a) == 0
    assert cache.get_or_compute(key, lambda: "computed", org_id=org_a) == "computed"
    assert cache.get(key, org_id=org_b) == "theirs"
    assert cache.delete_prefix("", org_id=org_b) == 1
    cache.delete_prefix("", org_id=org_a)


def test_delete_and_delete_prefix_walk_the_index_not_the_keyspace(
    redis_client: Redis, redis_prefix: str
) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    other = Cache(redis_client, "report", prefix=redis_prefix)
    for i in range(1200):
        cache.set(f"c:{i}", i, org_id="org_1")
    cache.set("d:1", 1, org_id="org_1")
    cache.set("c*literal", 1, org_id="org_1")
    other.set("c:1", 1, org_id="org_1")
    cache.set("c:1", 1, org_id="org_2")
    index = f"{redis_prefix}cacheidx:{{org_1:campaign}}"
    assert redis_client.zcard(index) == 1202
    assert cache.delete("d:1", "nope", org_id="org_1") == 1
    assert cache.delete_prefix("c*", org_id="org_1") == 1  # glob characters are literal
    assert cache.delete_prefix("c:", org_id="org_1") == 1200
    assert redis_client.zcard(index) == 0
    assert cache.get("c:5", org_id="org_1") is None
    assert other.get("c:1", org_id="org_1") == 1
    assert cache.get("c:1", org_id="org_2") == 1


def test_the_index_forgets_expired_values(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    index = f"{redis_prefix}cacheidx:{{org_1:campaign}}"
    cache.set("old", 1, org_id="org_1", ttl=0.05)
    assert wait_until(lambda: cache.get("old", org_id="org_1") is None, timeout=3)
    cache.set("new", 1, org_id="org_1", ttl=100)
    assert redis_client.zrange(index, 0, -1) == [f"{redis_prefix}cache:{{org_1:campaign}}:new"]
    assert 99_000 < redis_client.pttl(index) <= 100_000


def test_invalidate_by_tag(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set("1", "a", org_id="org_1", tags=["camp:1", "dsp:dv360"])
    cache.set("2", "b", org_id="org_1", tags=["camp:1"])
    cache.set("3", "c", org_id="org_1", tags=["camp:2", "dsp:dv360"])
    cache.set("4", "d", org_id="org_1")
    assert cache.invalidate_tags("camp:1", org_id="org_1") == 2
    assert [cache.get(k, org_id="org_1") for k in "1234"] == [None, None, "c", "d"]
    assert cache.invalidate_tags("dsp:dv360", "camp:9", org_id="org_1") == 1
    assert cache.get("3", org_id="org_1") is None
    assert cache.invalidate_tags(org_id="org_1") == 0
    assert redis_client.exists(f"{redis_prefix}cachetag:{{org_1:campaign}}:camp:1") == 0
    assert redis_client.zcard(f"{redis_prefix}cacheidx:{{org_1:campaign}}") == 1


def test_tag_set_lives_as_long_as_its_longest_value(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set("short", 1, org_id="org_1", ttl=1, tags=["t"])
    cache.set("long", 1, org_id="org_1", ttl=100, tags=["t"])
    cache.set("short2", 1, org_id="org_1", ttl=2, tags=["t"])
    ttl = redis_client.pttl(f"{redis_prefix}cachetag:{{org_1:campaign}}:t")
    assert 99_000 < ttl <= 100_000


def test_stampede_one_of_twenty_concurrent_callers_recomputes(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    computed = []
    start = threading.Barrier(CALLERS)
    results: list[Any] = []
    lock = threading.Lock()

    def compute() -> dict[str, int]:
        computed.append(1)
        time.sleep(0.3)  # a slow upstream, not a TTL wait
        return {"total": 42}

    def caller() -> None:
        client = connect(redis_url)
        cache = Cache(client, "report", ttl=30, lock_ttl=5, prefix=redis_prefix)
        start.wait()
        value = cache.get_or_compute("summary", compute, org_id="org_1")
        with lock:
            results.append(value)
        client.close()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    assert results == [{"total": 42}] * CALLERS
    assert redis_client.exists(f"{redis_prefix}cachelock:{{org_1:report}}:summary") == 0


def test_stale_value_is_served_while_one_caller_recomputes(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    cache = Cache(redis_client, "report", ttl=30, stale_ttl=30, prefix=redis_prefix)
    cache.set("k", "old", org_id="org_1")
    redis_client.pexpire(f"{redis_prefix}cache:{{org_1:report}}:k", 20_000)  # now stale
    assert cache.get("k", org_id="org_1") is None  # stale is not fresh
    assert cache.get("k", org_id="org_1", allow_stale=True) == "old"

    computed = []
    start = threading.Barrier(CALLERS)
    results: list[Any] = []
    lock = threading.Lock()

    def compute() -> str:
        computed.append(1)
        time.sleep(0.3)  # a slow upstream
        return "new"

    def caller() -> None:
        client = connect(redis_url)
        mine = Cache(client, "report", ttl=30, stale_ttl=30, prefix=redis_prefix)
        start.wait()
        began = time.monotonic()
        value = mine.get_or_compute("k", compute, org_id="org_1")
        with lock:
            results.append((value, time.monotonic() - began))
        client.close()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    values = [value for value, _ in results]
    assert values.count("new") == 1
    assert values.count("old") == CALLERS - 1
    assert all(took < 0.25 for value, took in results if value == "old")


def test_failed_compute_releases_the_lock(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "report", lock_ttl=30, prefix=redis_prefix)

    def boom() -> int:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", boom, org_id="org_1")
    assert redis_client.exists(f"{redis_prefix}cachelock:{{org_1:report}}:k") == 0
    assert cache.get_or_compute("k", lambda: 7, org_id="org_1") == 7


def test_waiter_computes_itself_when_the_holder_never_finishes(
    redis_client: Redis, redis_prefix: str
) -> None:
    cache = Cache(redis_client, "report", lock_ttl=30, prefix=redis_prefix)
    redis_client.set(f"{redis_prefix}cachelock:{{org_1:report}}:k", "someone-else", px=30_000)
    began = time.monotonic()
    assert cache.get_or_compute("k", lambda: "mine", org_id="org_1", wait=0.2) == "mine"
    assert 0.2 <= time.monotonic() - began < 1.0


def test_async_cache(redis_url: str, redis_prefix: str) -> None:
    computed = []

    async def compute() -> int:
        computed.append(1)
        await asyncio.sleep(0.2)
        return 5

    async def main() -> list[Any]:
        client = connect_async(redis_url)
        cache = AsyncCache(client, "report", prefix=redis_prefix)
        try:
            values = await asyncio.gather(
                *(cache.get_or_compute("k", compute, org_id="org_1") for _ in range(CALLERS))
            )
            await cache.set("x", [1, 2], org_id="org_1", tags=["t"])
            values.append(await cache.get("x", org_id="org_1"))
            values.append(await cache.get("x", org_id="org_2"))
            values.append(await cache.invalidate_tags("t", org_id="org_1"))
            values.append(await cache.delete("k", org_id="org_1"))
            values.append(await cache.delete_prefix("", org_id="org_1"))
        finally:
            await client.aclose()
        return values

    values = asyncio.run(main())
    assert values == [5] * CALLERS + [[1, 2], None, 1, 1, 0]
    assert len(computed) == 1


@pytest.mark.parametrize(
    ("key", "value", "kwargs"),
    [
        ("k", object(), {}),
        ("k", float("nan"), {}),
        ("", 1, {}),
        ("a b", 1, {}),
        ("k{x}", 1, {}),
        ("k", 1, {"ttl": 0}),
        ("k", 1, {"ttl": -1}),
        ("k", 1, {"tags": "org:1"}),
        ("k", 1, {"tags": ["has space"]}),
        ("k", 1, {"org_id": "org:1"}),
        ("k", 1, {"org_id": ""}),
    ],
)
def test_bad_cache_input_is_rejected(
    redis_client: Redis, redis_prefix: str, key: str, value: object, kwargs: dict[str, Any]
) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    with pytest.raises(ValidationError):
        cache.set(key, value, **{"org_id": "org_1", **kwargs})
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


def test_bad_namespace_or_prefix_is_rejected(redis_client: Redis) -> None:
    for namespace in ("", "a:b", "a{b}"):
        with pytest.raises(ValidationError):
            Cache(redis_client, namespace)
    with pytest.raises(ValidationError):
        Cache(redis_client, "campaign", prefix="{x}:")

"""The cache: TTLs, tags, prefix deletion and stampede protection."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncCache, Cache, connect, connect_async

CALLERS = 20


def test_set_get_and_expiry(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", ttl=0.3, prefix=redis_prefix)
    cache.set("123", {"id": "123", "name": "Campaign"})
    # the spec's cache:campaign:123, with the namespace as hash tag
    raw = redis_client.get(f"{redis_prefix}cache:{{campaign}}:123")
    assert raw == '{"id":"123","name":"Campaign"}'
    assert cache.get("123") == {"id": "123", "name": "Campaign"}
    assert cache.get("missing", "fallback") == "fallback"
    time.sleep(0.4)
    assert cache.get("123") is None


def test_delete_and_delete_prefix_without_keys_command(
    redis_client: Redis, redis_prefix: str
) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    other = Cache(redis_client, "report", prefix=redis_prefix)
    for i in range(1200):
        cache.set(f"org_1:{i}", i)
    cache.set("org_2:1", 1)
    cache.set("org_1*literal", 1)
    other.set("org_1:1", 1)
    assert cache.delete("org_2:1", "nope") == 1
    assert cache.delete_prefix("org_1*") == 1  # glob characters are literal
    assert cache.delete_prefix("org_1:") == 1200
    assert cache.get("org_1:5") is None
    assert other.get("org_1:1") == 1


def test_invalidate_by_tag(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set("1", "a", tags=["org:1", "dsp:dv360"])
    cache.set("2", "b", tags=["org:1"])
    cache.set("3", "c", tags=["org:2", "dsp:dv360"])
    cache.set("4", "d")
    assert cache.invalidate_tags("org:1") == 2
    assert [cache.get(k) for k in "1234"] == [None, None, "c", "d"]
    assert cache.invalidate_tags("dsp:dv360", "org:9") == 1
    assert cache.get("3") is None
    assert cache.invalidate_tags() == 0
    assert redis_client.exists(f"{redis_prefix}cachetag:{{campaign}}:org:1") == 0


def test_tag_set_lives_as_long_as_its_longest_value(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set("short", 1, ttl=1, tags=["t"])
    cache.set("long", 1, ttl=100, tags=["t"])
    cache.set("short2", 1, ttl=2, tags=["t"])
    ttl = redis_client.pttl(f"{redis_prefix}cachetag:{{campaign}}:t")
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
        time.sleep(0.3)
        return {"total": 42}

    def caller() -> None:
        client = connect(redis_url)
        cache = Cache(client, "report", ttl=30, lock_ttl=5, prefix=redis_prefix)
        start.wait()
        value = cache.get_or_compute("org_1:summary", compute)
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
    assert redis_client.exists(f"{redis_prefix}cachelock:{{report}}:org_1:summary") == 0


def test_stale_value_is_served_while_one_caller_recomputes(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    cache = Cache(redis_client, "report", ttl=0.2, stale_ttl=30, prefix=redis_prefix)
    cache.set("k", "old")
    time.sleep(0.25)
    assert cache.get("k") is None  # stale is not fresh
    assert cache.get("k", allow_stale=True) == "old"

    computed = []
    start = threading.Barrier(CALLERS)
    results: list[Any] = []
    lock = threading.Lock()

    def compute() -> str:
        computed.append(1)
        time.sleep(0.3)
        return "new"

    def caller() -> None:
        client = connect(redis_url)
        mine = Cache(client, "report", ttl=0.2, stale_ttl=30, prefix=redis_prefix)
        start.wait()
        began = time.monotonic()
        value = mine.get_or_compute("k", compute)
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
    # the stale readers did not wait for the recompute
    assert all(took < 0.25 for value, took in results if value == "old")


def test_failed_compute_releases_the_lock(redis_client: Redis, redis_prefix: str) -> None:
    cache = Cache(redis_client, "report", lock_ttl=30, prefix=redis_prefix)

    def boom() -> int:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", boom)
    assert redis_client.exists(f"{redis_prefix}cachelock:{{report}}:k") == 0
    assert cache.get_or_compute("k", lambda: 7) == 7


def test_waiter_computes_itself_when_the_holder_never_finishes(
    redis_client: Redis, redis_prefix: str
) -> None:
    cache = Cache(redis_client, "report", lock_ttl=30, prefix=redis_prefix)
    redis_client.set(f"{redis_prefix}cachelock:{{report}}:k", "someone-else", px=30_000)
    began = time.monotonic()
    assert cache.get_or_compute("k", lambda: "mine", wait=0.2) == "mine"
    assert 0.2 <= time.monotonic() - began < 1.0


def test_async_stampede(redis_url: str, redis_prefix: str) -> None:
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
                *(cache.get_or_compute("k", compute) for _ in range(CALLERS))
            )
            await cache.set("x", [1, 2], tags=["t"])
            values.append(await cache.get("x"))
            values.append(await cache.invalidate_tags("t"))
            values.append(await cache.delete_prefix(""))
        finally:
            await client.aclose()
        return values

    values = asyncio.run(main())
    assert values == [5] * CALLERS + [[1, 2], 1, 1]
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
    ],
)
def test_bad_cache_input_is_rejected(
    redis_client: Redis, redis_prefix: str, key: str, value: object, kwargs: dict[str, Any]
) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    with pytest.raises(ValidationError):
        cache.set(key, value, **kwargs)
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


def test_bad_namespace_or_prefix_is_rejected(redis_client: Redis) -> None:
    for namespace in ("", "a:b", "a{b}"):
        with pytest.raises(ValidationError):
            Cache(redis_client, namespace)
    with pytest.raises(ValidationError):
        Cache(redis_client, "campaign", prefix="{x}:")

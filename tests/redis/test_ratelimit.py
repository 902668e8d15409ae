"""The sliding-window rate limiter against a real server."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncRateLimiter, Limit, RateLimiter, connect, connect_async
from platformdb.redis._fcall import fcall
from platformdb.redis.functions import library
from platformdb.redis.keys import KeySpace
from tests.redis.helpers import wait_until

CLIENTS = 8


def server_us(client: Redis) -> int:
    """The server's clock, which the limiter reads (never the test machine's)."""
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def window_has_passed(client: Redis, prefix: str, limit: Limit) -> bool:
    """Every admission of org_1/dv360 is older than the window, by the server's clock."""
    key = KeySpace(prefix).ratelimit("org_1", "dv360")
    newest = client.zrange(key, -1, -1, withscores=True)
    return not newest or server_us(client) - int(newest[0][1]) > limit.window * 1_000_000


def burst(url: str, prefix: str, limit: Limit, calls_per_client: int) -> list[bool]:
    """``CLIENTS`` clients, each its own connection, hit one org/DSP at the same moment."""
    start = threading.Barrier(CLIENTS)
    results: list[bool] = []
    lock = threading.Lock()

    def client_thread() -> None:
        client = connect(url)
        limiter = RateLimiter(client, limit, prefix=prefix)
        start.wait()
        mine = [limiter.allow("org_1", "dv360").allowed for _ in range(calls_per_client)]
        with lock:
            results.extend(mine)
        client.close()

    threads = [threading.Thread(target=client_thread) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.slow
def test_admits_exactly_limit_under_concurrent_clients_and_again_after_window(
    redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    limit = Limit(25, 1.0)
    first = burst(redis_url, redis_prefix, limit, calls_per_client=10)
    assert len(first) == 80
    assert sum(first) == 25

    assert wait_until(lambda: window_has_passed(redis_client, redis_prefix, limit), timeout=5)
    second = burst(redis_url, redis_prefix, limit, calls_per_client=10)
    assert sum(second) == 25


def test_retry_after_is_when_a_slot_frees(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Limit(3, 0.4), prefix=redis_prefix)
    assert all(limiter.allow("org_1", "dv360") for _ in range(3))
    refused = limiter.allow("org_1", "dv360")
    assert not refused.allowed
    assert refused.remaining == 0
    assert 0 < refused.retry_after <= 0.4
    refused_at = server_us(redis_client)
    assert wait_until(lambda: server_us(redis_client) - refused_at
                      > refused.retry_after * 1_000_000, timeout=5)
    assert limiter.allow("org_1", "dv360").allowed
    # The window slides: never more than the limit in any window.
    admitted = sum(limiter.allow("org_1", "dv360").allowed for _ in range(10))
    assert admitted <= 2


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    requests=st.integers(min_value=1, max_value=30),
    window=st.floats(min_value=0.3, max_value=5.0),
    extra=st.integers(min_value=0, max_value=10),
)
def test_any_window_admits_exactly_limit(
    redis_client: Redis, redis_prefix: str, requests: int, window: float, extra: int
) -> None:
    limiter = RateLimiter(redis_client, Limit(requests, window), prefix=redis_prefix)
    org = f"org_{uuid.uuid4().hex[:8]}"
    decisions = [limiter.allow(org, "dv360") for _ in range(requests + extra)]
    allowed = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert len(allowed) == requests
    assert [d.remaining for d in allowed] == list(range(requests - 1, -1, -1))
    assert all(0 < d.retry_after <= window + 0.001 for d in refused)
    assert 0 < redis_client.pttl(limiter.keys.ratelimit(org, "dv360")) <= round(window * 1000)


def test_limits_are_configured_per_dsp_and_per_org(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(
        redis_client,
        Limit(2, 10),
        per_dsp={"ttd": Limit(3, 10)},
        per_org_dsp={("org_big", "ttd"): Limit(5, 10)},
        prefix=redis_prefix,
    )
    assert sum(limiter.allow("org_1", "dv360").allowed for _ in range(10)) == 2
    assert sum(limiter.allow("org_1", "ttd").allowed for _ in range(10)) == 3
    assert sum(limiter.allow("org_big", "ttd").allowed for _ in range(10)) == 5
    assert limiter.allow("org_big", "dv360").limit == 2


def test_pipelined_batch_decides_in_order(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Limit(4, 10), prefix=redis_prefix)
    decisions = limiter.allow_many([("org_1", "dv360")] * 6 + [("org_2", "dv360")] * 2)
    assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2 + [True] * 2
    assert [d.remaining for d in decisions[:4]] == [3, 2, 1, 0]
    assert limiter.allow_many([]) == []


def test_lowered_limit_refuses_until_enough_requests_left(
    redis_client: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis_client, Limit(10, 10), prefix=redis_prefix)
    for _ in range(6):
        assert limiter.allow("org_1", "dv360")
    decision = limiter.allow("org_1", "dv360", limit=Limit(3, 10))
    assert not decision.allowed
    assert 9 < decision.retry_after <= 10


def test_reset_forgets_the_window(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Limit(1, 10), prefix=redis_prefix)
    assert limiter.allow("org_1", "dv360")
    assert not limiter.allow("org_1", "dv360")
    limiter.reset("org_1", "dv360")
    assert limiter.allow("org_1", "dv360")


def test_async_limiter_admits_exactly_limit(redis_url: str, redis_prefix: str) -> None:
    async def main() -> list[bool]:
        client = connect_async(redis_url)
        limiter = AsyncRateLimiter(client, Limit(7, 10), prefix=redis_prefix)
        try:
            single = await asyncio.gather(*(limiter.allow("org_a", "dv360") for _ in range(20)))
            batch = await limiter.allow_many([("org_b", "dv360")] * 10)
            await limiter.reset("org_a", "dv360")
            await limiter.reset("org_b", "dv360")
        finally:
            await client.aclose()
        return [d.allowed for d in single] + [d.allowed for d in batch]

    results = asyncio.run(main())
    assert sum(results[:20]) == 7
    assert sum(results[20:]) == 7


@pytest.mark.parametrize(
    ("requests", "window"),
    [
        (0, 1.0),
        (-1, 1.0),
        (1.5, 1.0),
        (True, 1.0),
        (10**7, 1.0),
        (1, 0),
        (1, -2),
        (1, float("nan")),
    ],
)
def test_bad_limits_are_rejected(requests: object, window: object) -> None:
    with pytest.raises(ValidationError):
        Limit(requests, window)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("org", "dsp"),
    [
        ("", "dv360"),
        ("org_1", ""),
        ("org:1", "dv360"),
        ("org_1", "dv{360}"),
        ("org 1", "dv360"),
        ("org*", "dv360"),
        (None, "dv360"),
    ],
)
def test_bad_org_or_dsp_is_rejected(
    redis_client: Redis, redis_prefix: str, org: object, dsp: object
) -> None:
    limiter = RateLimiter(redis_client, Limit(5, 1), prefix=redis_prefix)
    with pytest.raises(ValidationError):
        limiter.allow(org, dsp)  # type: ignore[arg-type]
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


@pytest.mark.parametrize(
    "args",
    [
        ["0", "1000", "r1"],
        ["-5", "1000", "r1"],
        ["abc", "1000", "r1"],
        ["1.5", "1000", "r1"],
        ["5", "0", "r1"],
        ["5", "", "r1"],
        ["5", "1000", ""],
        ["5", "1000"],
        [],
    ],
)
def test_script_refuses_bad_arguments_instead_of_allowing(
    redis_client: Redis, redis_prefix: str, args: list[str]
) -> None:
    key = f"{redis_prefix}ratelimit:{{org_1}}:{{dv360}}"
    with pytest.raises(ValidationError, match="ratelimit_allow"):
        fcall(redis_client, library()["ratelimit_allow"], [key], args)
    assert redis_client.exists(key) == 0

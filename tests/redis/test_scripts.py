"""The Lua script registry: headers, loading, EVALSHA with NOSCRIPT reload."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.errors import PlatformDBError
from platformdb.redis import (
    AsyncRateLimiter,
    Limit,
    RateLimiter,
    ScriptRegistry,
    connect,
    connect_async,
    load_all,
    registry,
    script_versions,
)
from platformdb.redis.scripts import scripts_dir

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "ratelimit_allow",
    "session_create",
    "session_touch",
    "session_revoke",
    "session_revoke_all",
    "session_list",
    "cache_get",
    "cache_set",
    "cache_unlock",
    "cache_invalidate_tags",
    "queue_enqueue",
    "queue_claim",
    "queue_ack",
    "queue_retry",
    "queue_extend",
    "queue_cancel",
    "queue_redrive",
}


def test_registry_reads_the_checkout_scripts() -> None:
    assert scripts_dir() == REPO / "redis" / "scripts"
    assert set(registry().names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_script_opens_with_its_header(name: str) -> None:
    script = registry()[name]
    header = script.source.split("\n\n", 1)[0]
    assert header.startswith(f"-- name: {name}\n-- version: ")
    assert re.search(r"^-- version: \d+$", header, re.MULTILINE)
    assert "-- returns:" in header
    assert "KEYS[1" in header
    uses_argv = "ARGV[" in script.source.split("\n\n", 1)[1]
    assert not uses_argv or "-- ARGV[1]" in header
    assert script.sha == hashlib.sha1(script.source.encode(), usedforsecurity=False).hexdigest()
    assert script_versions()[name] == f"{script.version}:{script.sha}"


def test_a_registry_needs_scripts_with_valid_headers(tmp_path: Path) -> None:
    with pytest.raises(PlatformDBError, match="no Lua scripts"):
        ScriptRegistry(tmp_path)
    (tmp_path / "x.lua").write_text("-- name: y\n-- version: 1\nreturn 1\n")
    with pytest.raises(PlatformDBError, match="must match the file name"):
        ScriptRegistry(tmp_path)
    (tmp_path / "x.lua").write_text("-- name: x\nreturn 1\n")
    with pytest.raises(PlatformDBError, match="version"):
        ScriptRegistry(tmp_path)
    with pytest.raises(PlatformDBError, match="no Lua script named"):
        registry()["nope"]


def test_load_all_loads_every_script(redis_client: Redis) -> None:
    loaded = load_all(redis_client)
    assert loaded == {s.name: s.sha for s in registry()}
    assert all(redis_client.script_exists(*loaded.values()))


def test_noscript_after_script_flush_is_reloaded_transparently(
    redis_client: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis_client, Limit(5, 10), prefix=redis_prefix)
    sha = registry()["ratelimit_allow"].sha
    assert limiter.allow("org_1", "dv360").allowed
    redis_client.script_flush()
    assert redis_client.script_exists(sha) == [False]
    assert limiter.allow("org_1", "dv360").remaining == 3
    assert redis_client.script_exists(sha) == [True]

    redis_client.script_flush()
    decisions = limiter.allow_many([("org_1", "dv360")] * 4)
    # each request counted once, though the first attempt met NOSCRIPT
    assert [d.allowed for d in decisions] == [True, True, True, False]


def test_noscript_reload_async(redis_url: str, redis_client: Redis, redis_prefix: str) -> None:
    async def main() -> list[bool]:
        client = connect_async(redis_url)
        limiter = AsyncRateLimiter(client, Limit(2, 10), prefix=redis_prefix)
        try:
            redis_client.script_flush()
            first = await limiter.allow("org_1", "dv360")
            redis_client.script_flush()
            rest = await limiter.allow_many([("org_1", "dv360")] * 2)
        finally:
            await client.aclose()
        return [first.allowed] + [d.allowed for d in rest]

    assert asyncio.run(main()) == [True, True, False]


def test_a_dropped_connection_is_replaced_transparently(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, Limit(10, 10), prefix=redis_prefix)
    try:
        assert limiter.allow("org_1", "dv360").remaining == 9
        victim = client.client_id()  # the pool's one idle connection
        assert redis_client.client_kill_filter(_id=victim) == 1
        assert limiter.allow("org_1", "dv360").remaining == 8
        victim = client.client_id()
        assert redis_client.client_kill_filter(_id=victim) == 1
        assert [d.remaining for d in limiter.allow_many([("org_1", "dv360")] * 2)] == [7, 6]
    finally:
        client.close()

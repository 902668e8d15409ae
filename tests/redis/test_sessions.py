"""Sessions: create, read-and-touch (sliding expiry), revoke one, revoke all."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncSessionStore, SessionStore, connect_async
from platformdb.redis.keys import hash_tag
from platformdb.redis.scripts import registry


def test_created_session_reads_back(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=60, prefix=redis_prefix)
    session = store.create("user_123", "org_456", {"role": "admin"})
    assert len(session.session_id) >= 40
    got = store.get("user_123", session.session_id)
    assert got is not None
    assert (got.user_id, got.org_id, got.data) == ("user_123", "org_456", {"role": "admin"})
    assert got.created_at == session.created_at
    # the spec's key, with the user id as hash tag, holds the user's session index
    index = f"{redis_prefix}session:{{user_123}}"
    assert redis_client.type(index) == "hash"
    assert redis_client.hkeys(index) == [session.session_id]
    key = f"{index}:{session.session_id}"
    assert redis_client.hget(key, "org_id") == "org_456"
    assert hash_tag(key) == hash_tag(index) == "user_123"


def test_session_expires_when_idle(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=0.3, prefix=redis_prefix)
    session = store.create("user_1", "org_1")
    time.sleep(0.4)
    assert store.get("user_1", session.session_id) is None
    assert store.sessions("user_1") == []


def test_reading_a_session_slides_its_expiry(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=0.4, prefix=redis_prefix)
    session = store.create("user_1", "org_1")
    for _ in range(4):  # 0.8 s in all, twice the idle TTL
        time.sleep(0.2)
        touched = store.get("user_1", session.session_id)
        assert touched is not None
        assert touched.expires_at > session.expires_at
    # reading without touch does not slide
    time.sleep(0.2)
    assert store.get("user_1", session.session_id, touch=False) is not None
    time.sleep(0.3)
    assert store.get("user_1", session.session_id) is None


def test_absolute_ttl_caps_sliding(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=10, absolute_ttl=0.5, prefix=redis_prefix)
    session = store.create("user_1", "org_1")
    assert session.absolute_expires_at == session.expires_at
    time.sleep(0.3)
    touched = store.get("user_1", session.session_id)
    assert touched is not None and touched.expires_at == session.absolute_expires_at
    time.sleep(0.3)
    assert store.get("user_1", session.session_id) is None


def test_revoke_one_leaves_the_others(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    a = store.create("user_1", "org_1")
    b = store.create("user_1", "org_1")
    assert store.revoke("user_1", a.session_id) is True
    assert store.revoke("user_1", a.session_id) is False
    assert store.get("user_1", a.session_id) is None
    assert store.get("user_1", b.session_id) is not None
    assert store.sessions("user_1") == [b.session_id]


def test_revoke_all_removes_every_session_of_the_user_and_no_other(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    mine = [store.create("user_1", "org_1").session_id for _ in range(5)]
    # a user id that extends "user_1", and one sharing its org
    others = {
        "user_10": [store.create("user_10", "org_1").session_id for _ in range(2)],
        "user_2": [store.create("user_2", "org_1").session_id for _ in range(2)],
    }
    assert store.revoke_all("user_1") == 5
    assert all(store.get("user_1", sid) is None for sid in mine)
    assert store.sessions("user_1") == []
    assert redis_client.exists(f"{redis_prefix}session:{{user_1}}") == 0
    for user, sids in others.items():
        assert sorted(store.sessions(user)) == sorted(sids)
        assert all(store.get(user, sid) is not None for sid in sids)
    assert store.revoke_all("user_1") == 0


def test_session_cap_evicts_the_oldest(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, max_sessions=2, prefix=redis_prefix)
    first = store.create("user_1", "org_1")
    time.sleep(0.005)
    second = store.create("user_1", "org_1")
    time.sleep(0.005)
    third = store.create("user_1", "org_1")
    assert sorted(store.sessions("user_1")) == sorted([second.session_id, third.session_id])
    assert store.get("user_1", first.session_id) is None


def test_session_id_cannot_be_reused(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    store.create("user_1", "org_1", session_id="fixed-id")
    with pytest.raises(Exception, match="already in use"):
        store.create("user_1", "org_1", session_id="fixed-id")


def test_async_store(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        client = connect_async(redis_url)
        store = AsyncSessionStore(client, idle_ttl=30, prefix=redis_prefix)
        try:
            a = await store.create("user_1", "org_1", {"ua": "firefox"})
            b = await store.create("user_1", "org_1")
            got = await store.get("user_1", a.session_id)
            assert got is not None and got.data == {"ua": "firefox"}
            assert sorted(await store.sessions("user_1")) == sorted([a.session_id, b.session_id])
            assert await store.revoke("user_1", b.session_id)
            assert await store.revoke_all("user_1") == 1
            assert await store.get("user_1", a.session_id) is None
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"idle_ttl": 0},
        {"idle_ttl": -1},
        {"absolute_ttl": 0},
        {"max_sessions": 0},
        {"idle_ttl": float("inf")},
    ],
)
def test_bad_store_settings_are_rejected(redis_client: Redis, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SessionStore(redis_client, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "org", "data"),
    [
        ("", "org_1", None),
        ("user_1", "", None),
        ("user}1", "org_1", None),
        ("user_1", "org_1", {"x": object()}),
        ("user_1", "org_1", ["not", "a", "mapping"]),
    ],
)
def test_bad_session_input_is_rejected(
    redis_client: Redis, redis_prefix: str, user: str, org: str, data: object
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    with pytest.raises(ValidationError):
        store.create(user, org, data)  # type: ignore[arg-type]
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


def test_script_refuses_a_session_key_of_another_user(
    redis_client: Redis, redis_prefix: str
) -> None:
    index = f"{redis_prefix}session:{{user_1}}"
    foreign = f"{redis_prefix}session:{{user_2}}:abc"
    with pytest.raises(ValidationError):
        registry().run(
            redis_client,
            "session_create",
            [index, foreign],
            ["abc", "user_1", "org_1", "{}", 1000, 0, 0],
        )
    with pytest.raises(ValidationError):
        registry().run(
            redis_client,
            "session_create",
            [index, f"{index}:abc"],
            ["abc", "user_1", "org_1", "{}", 0, 0, 0],
        )
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []

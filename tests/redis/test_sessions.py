"""Sessions: keyed by a hash of the id, scoped to org and user, sliding and absolute expiry."""

from __future__ import annotations

import asyncio
import hashlib
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncSessionStore, SessionStore, connect_async, library
from platformdb.redis._fcall import fcall
from platformdb.redis.keys import hash_tag, session_handle
from tests.redis.helpers import wait_until

IDS = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)


def all_text(client: Redis, prefix: str) -> str:
    """Every key name and every value under ``prefix``, as one string."""
    parts: list[str] = []
    for key in client.scan_iter(match=f"{prefix}*"):
        parts.append(key)
        kind = client.type(key)
        if kind == "hash":
            parts.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
        elif kind == "string":
            parts.append(client.get(key) or "")
    return "\n".join(parts)


def test_the_session_id_never_reaches_redis(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=60, prefix=redis_prefix)
    session = store.create("user_123", {"role": "admin"}, org_id="org_456")
    assert len(session.session_id) >= 40
    assert session.handle == hashlib.sha256(session.session_id.encode()).hexdigest()
    stored = all_text(redis_client, redis_prefix)
    assert session.session_id not in stored  # neither in a key name nor in a value
    assert session.handle in stored
    index = f"{redis_prefix}session:{{org_456:user_123}}"
    assert redis_client.hkeys(index) == [session.handle]
    key = f"{index}:{session.handle}"
    assert redis_client.hget(key, "org_id") == "org_456"
    assert hash_tag(key) == hash_tag(index) == "org_456:user_123"
    got = store.get("user_123", session.session_id, org_id="org_456")
    assert got is not None
    assert (got.user_id, got.org_id, got.data) == ("user_123", "org_456", {"role": "admin"})
    assert got.created_at == session.created_at and got.handle == session.handle
    assert store.sessions("user_123", org_id="org_456") == [session.handle]


def test_a_session_asked_for_under_another_org_or_user_is_not_found(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    session = store.create("user_1", org_id="org_a")
    sid = session.session_id
    assert store.get("user_1", sid, org_id="org_b") is None
    assert store.get("user_1", sid, org_id="org_b", touch=False) is None
    assert store.get("user_2", sid, org_id="org_a") is None
    assert store.sessions("user_1", org_id="org_b") == []
    assert store.revoke("user_1", sid, org_id="org_b") is False
    assert store.revoke_all("user_1", org_id="org_b") == 0
    assert store.get("user_1", sid, org_id="org_a") is not None


def test_the_functions_check_the_org_and_user_stored_in_the_session(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    session = store.create("user_1", org_id="org_a")
    keys = store.one("org_a", "user_1", session.handle)
    touch, get = library()["session_touch"], library()["session_get"]
    assert fcall(redis_client, touch, keys, [session.handle, "org_b", "user_1"]) == []
    assert fcall(redis_client, get, keys[1:], ["org_a", "user_2"]) == []
    assert fcall(redis_client, get, keys[1:], ["org_a", "user_1"]) != []
    # a session hash whose fields name org_b cannot be created under org_a's keys
    with pytest.raises(ValidationError, match="org_id"):
        fcall(redis_client, library()["session_create"], store.one("org_a", "user_1", "0" * 64),
              ["0" * 64, "user_1", "org_b", "{}", 1000, 0, 0])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org_a=IDS, org_b=IDS, user=IDS)
def test_one_org_never_reaches_another_orgs_sessions_with_the_same_user_id(
    redis_client: Redis, redis_prefix: str, org_a: str, org_b: str, user: str
) -> None:
    if org_a == org_b:
        return
    store = SessionStore(redis_client, prefix=redis_prefix)
    theirs = store.create(user, {"owner": org_b}, org_id=org_b)
    mine = store.create(user, {"owner": org_a}, org_id=org_a)
    assert store.get(user, theirs.session_id, org_id=org_a) is None
    assert store.sessions(user, org_id=org_a) == [mine.handle]
    assert store.revoke_handle(user, theirs.handle, org_id=org_a) is False
    assert store.revoke_all(user, org_id=org_a) == 1
    got = store.get(user, theirs.session_id, org_id=org_b)
    assert got is not None and got.data == {"owner": org_b}
    assert store.revoke_all(user, org_id=org_b) == 1


def test_session_expires_when_idle(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=1.0, prefix=redis_prefix)
    session = store.create("user_1", org_id="org_1")
    left = redis_client.pttl(f"{redis_prefix}session:{{org_1:user_1}}:{session.handle}")
    assert 0 < left <= 1000 or left == -2  # -2: a busy machine let the second pass already
    assert wait_until(  # a plain read: touching would keep it alive
        lambda: store.get("user_1", session.session_id, org_id="org_1", touch=False) is None,
        timeout=10)
    assert store.get("user_1", session.session_id, org_id="org_1") is None
    assert store.sessions("user_1", org_id="org_1") == []


def test_reading_a_session_slides_its_expiry_and_a_plain_read_does_not(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, idle_ttl=60, prefix=redis_prefix)
    session = store.create("user_1", org_id="org_1")
    key = f"{redis_prefix}session:{{org_1:user_1}}:{session.handle}"
    redis_client.pexpire(key, 1000)  # as if 59 s had passed
    assert store.get("user_1", session.session_id, org_id="org_1", touch=False) is not None
    assert redis_client.pttl(key) <= 1000
    touched = store.get("user_1", session.session_id, org_id="org_1")
    assert touched is not None and touched.expires_at >= session.expires_at
    assert redis_client.pttl(key) > 50_000


def test_absolute_ttl_caps_sliding(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, idle_ttl=10, absolute_ttl=0.5, prefix=redis_prefix)
    session = store.create("user_1", org_id="org_1")
    assert session.absolute_expires_at == session.expires_at
    touched = store.get("user_1", session.session_id, org_id="org_1")
    assert touched is not None and touched.expires_at == session.absolute_expires_at
    assert wait_until(lambda: store.get("user_1", session.session_id, org_id="org_1") is None,
                      timeout=3)


def test_revoke_one_leaves_the_others(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    a = store.create("user_1", org_id="org_1")
    b = store.create("user_1", org_id="org_1")
    assert store.revoke("user_1", a.session_id, org_id="org_1") is True
    assert store.revoke("user_1", a.session_id, org_id="org_1") is False
    assert store.get("user_1", a.session_id, org_id="org_1") is None
    assert store.get("user_1", b.session_id, org_id="org_1") is not None
    assert store.sessions("user_1", org_id="org_1") == [b.handle]
    assert store.revoke_handle("user_1", b.handle, org_id="org_1") is True
    assert store.get("user_1", b.session_id, org_id="org_1") is None


def test_revoke_all_removes_every_session_of_the_user_and_no_other(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    mine = [store.create("user_1", org_id="org_1").session_id for _ in range(5)]
    others = {  # a user id that extends "user_1", one sharing its org, the same id elsewhere
        ("org_1", "user_10"): [store.create("user_10", org_id="org_1") for _ in range(2)],
        ("org_1", "user_2"): [store.create("user_2", org_id="org_1") for _ in range(2)],
        ("org_2", "user_1"): [store.create("user_1", org_id="org_2") for _ in range(2)],
    }
    assert store.revoke_all("user_1", org_id="org_1") == 5
    assert all(store.get("user_1", sid, org_id="org_1") is None for sid in mine)
    assert redis_client.exists(f"{redis_prefix}session:{{org_1:user_1}}") == 0
    for (org, user), sessions in others.items():
        assert sorted(store.sessions(user, org_id=org)) == sorted(s.handle for s in sessions)
        assert all(store.get(user, s.session_id, org_id=org) is not None for s in sessions)


def test_session_cap_evicts_the_one_closest_to_expiry(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = SessionStore(redis_client, max_sessions=2, prefix=redis_prefix)
    first = store.create("user_1", org_id="org_1", idle_ttl=100)
    second = store.create("user_1", org_id="org_1", idle_ttl=200)
    third = store.create("user_1", org_id="org_1", idle_ttl=300)
    assert sorted(store.sessions("user_1", org_id="org_1")) == sorted([second.handle,
                                                                       third.handle])
    assert store.get("user_1", first.session_id, org_id="org_1") is None


def test_session_id_cannot_be_reused(redis_client: Redis, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    store.create("user_1", org_id="org_1", session_id="fixed-id")
    with pytest.raises(Exception, match="already in use"):
        store.create("user_1", org_id="org_1", session_id="fixed-id")
    assert session_handle("fixed-id") in redis_client.hkeys(
        f"{redis_prefix}session:{{org_1:user_1}}")


def test_async_store(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        client = connect_async(redis_url)
        store = AsyncSessionStore(client, idle_ttl=30, prefix=redis_prefix)
        try:
            a = await store.create("user_1", {"ua": "firefox"}, org_id="org_1")
            b = await store.create("user_1", org_id="org_1")
            got = await store.get("user_1", a.session_id, org_id="org_1")
            assert got is not None and got.data == {"ua": "firefox"}
            assert await store.get("user_1", a.session_id, org_id="org_2") is None
            assert sorted(await store.sessions("user_1", org_id="org_1")) == sorted(
                [a.handle, b.handle])
            assert await store.revoke("user_1", b.session_id, org_id="org_1")
            assert await store.revoke_all("user_1", org_id="org_1") == 1
            assert await store.get("user_1", a.session_id, org_id="org_1", touch=False) is None
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs",
    [{"idle_ttl": 0}, {"idle_ttl": -1}, {"absolute_ttl": 0}, {"max_sessions": 0},
     {"idle_ttl": float("inf")}],
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
        ("user_1", "org:1", None),
        ("user_1", "org_1", {"x": object()}),
        ("user_1", "org_1", ["not", "a", "mapping"]),
    ],
)
def test_bad_session_input_is_rejected(
    redis_client: Redis, redis_prefix: str, user: str, org: str, data: object
) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    with pytest.raises(ValidationError):
        store.create(user, data, org_id=org)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.revoke_handle("user_1", "not-a-handle", org_id="org_1")
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


def test_the_function_refuses_a_session_key_of_another_index(
    redis_client: Redis, redis_prefix: str
) -> None:
    index = f"{redis_prefix}session:{{org_1:user_1}}"
    handle = "a" * 64
    create = library()["session_create"]
    with pytest.raises(ValidationError):
        fcall(redis_client, create, [index, f"{redis_prefix}session:{{org_1:user_2}}:{handle}"],
              [handle, "user_1", "org_1", "{}", 1000, 0, 0])
    with pytest.raises(ValidationError):
        fcall(redis_client, create, [index, f"{index}:{handle}"],
              [handle, "user_1", "org_1", "{}", 0, 0, 0])
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []

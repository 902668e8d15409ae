"""The per-service ACL users of redis/scripts/acl_users.redis on a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from redis.client import Redis
from redis.exceptions import NoPermissionError

from platformdb.errors import ConfigError, StoreUnavailable
from platformdb.redis import (
    EventBus,
    JobQueue,
    Limit,
    RateLimiter,
    SessionStore,
    acl_commands,
    apply_acl_users,
    connect,
)
from platformdb.redis.acl import roles


@pytest.fixture
def acl_users(redis_client: Redis, redis_prefix: str) -> Iterator[tuple[str, dict[str, str]]]:
    suffix = f"-{redis_prefix.rstrip(':')}"
    passwords = {role: uuid.uuid4().hex for role in roles()}
    names = apply_acl_users(redis_client, passwords, prefix=redis_prefix, user_suffix=suffix)
    yield suffix, passwords
    redis_client.execute_command("ACL", "DELUSER", *names)


def as_user(redis_url: str, name: str, password: str) -> Redis:
    parts = urlsplit(redis_url)
    netloc = f"{name}:{password}@{parts.hostname}:{parts.port}"
    client = connect(parts._replace(netloc=netloc).geturl())
    assert isinstance(client, Redis)
    return client


def test_acl_file_has_every_service_user() -> None:
    assert set(roles()) == {
        "RATELIMIT",
        "SESSIONS",
        "CACHE",
        "QUEUE",
        "EVENTS",
        "MIGRATE",
        "MONITOR",
    }
    commands = acl_commands({r: "pw" for r in roles()}, prefix="prod:")
    assert all(words[:2] == ["ACL", "SETUSER"] and "reset" in words for words in commands)
    ratelimit = next(w for w in commands if w[2] == "platformdb-ratelimit")
    assert "~prod:ratelimit:*" in ratelimit and ">pw" in ratelimit
    with pytest.raises(ConfigError):
        acl_commands({"RATELIMIT": "pw"})  # other roles' passwords missing


def test_restricted_user_is_refused_keys_outside_its_pattern(
    redis_url: str,
    redis_client: Redis,
    redis_prefix: str,
    acl_users: tuple[str, dict[str, str]],
) -> None:
    suffix, passwords = acl_users
    limiter_client = as_user(redis_url, f"platformdb-ratelimit{suffix}", passwords["RATELIMIT"])
    sessions_client = as_user(redis_url, f"platformdb-sessions{suffix}", passwords["SESSIONS"])
    try:
        # Its own structure works, scripts included, also when it must reload them.
        redis_client.script_flush()
        limiter = RateLimiter(limiter_client, Limit(2, 10), prefix=redis_prefix)
        assert limiter.allow("org_1", "dv360").allowed
        store = SessionStore(sessions_client, prefix=redis_prefix)
        session = store.create("user_1", "org_1")
        assert store.get("user_1", session.session_id) is not None

        # Anything else is refused by the server.
        with pytest.raises(NoPermissionError):
            limiter_client.hgetall(f"{redis_prefix}session:{{user_1}}")
        with pytest.raises(NoPermissionError):
            limiter_client.get(f"{redis_prefix}cache:{{campaign}}:1")
        with pytest.raises(NoPermissionError):
            limiter_client.zcard("ratelimit:{org_1}:{dv360}")  # another prefix
        with pytest.raises(NoPermissionError):
            limiter_client.flushall()
        with pytest.raises(NoPermissionError):
            limiter_client.keys("*")
        with pytest.raises(StoreUnavailable, match="ACL"):
            SessionStore(limiter_client, prefix=redis_prefix).revoke_all("user_1")
        with pytest.raises(StoreUnavailable, match="ACL"):
            RateLimiter(sessions_client, Limit(2, 10), prefix=redis_prefix).allow("org_1", "dv360")
        assert store.sessions("user_1") == [session.session_id]
    finally:
        limiter_client.close()
        sessions_client.close()


def test_queue_and_events_users_work_within_their_patterns(
    redis_url: str,
    redis_client: Redis,
    redis_prefix: str,
    acl_users: tuple[str, dict[str, str]],
) -> None:
    suffix, passwords = acl_users
    queue_client = as_user(redis_url, f"platformdb-queue{suffix}", passwords["QUEUE"])
    events_client = as_user(redis_url, f"platformdb-events{suffix}", passwords["EVENTS"])
    try:
        queue = JobQueue(queue_client, "etl", prefix=redis_prefix)
        queue.enqueue({"n": 1}, org_id="org_1")
        job = queue.claim()[0]
        assert queue.ack(job)
        assert queue.stats().counters["acked"] == 1
        with pytest.raises(NoPermissionError):
            queue_client.publish(f"{redis_prefix}events:{{org_1}}", "x")

        bus = EventBus(events_client, prefix=redis_prefix)
        bus.publish("org_1", "ping")
        with pytest.raises(NoPermissionError):
            events_client.publish("events:{org_1}", "x")  # outside its channel pattern
        with pytest.raises(NoPermissionError):
            events_client.get(f"{redis_prefix}queue:{{etl}}")
    finally:
        queue_client.close()
        events_client.close()

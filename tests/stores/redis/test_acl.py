"""The ACL users of redis/scripts/acl_users.redis on real servers.

Services run the functions library and their own keys' commands, nothing
else: no code of their own (FUNCTION LOAD/DELETE/FLUSH, SCRIPT, EVAL,
EVALSHA), no keyspace listing (SCAN, KEYS), no other service's keys.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from redis.client import Redis
from redis.exceptions import NoPermissionError, ResponseError

from platformdb.errors import ConfigError, StoreUnavailable
from platformdb.migrate import Migrator
from platformdb.redis import (
    Cache,
    EventBus,
    Job,
    JobQueue,
    Limit,
    RateLimiter,
    SessionStore,
    Worker,
    connect,
    delete_org,
    library,
    org_keys,
)
from platformdb.stores.redis.acl import acl_commands, apply_acl_users, roles
from platformdb.stores.redis.driver import RedisDriver, migrations

SERVICES = ("RATELIMIT", "SESSIONS", "CACHE", "QUEUE", "EVENTS")


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
    assert set(roles()) == {"RATELIMIT", "SESSIONS", "CACHE", "QUEUE", "EVENTS", "MIGRATE",
                            "ADMIN", "MONITOR"}
    commands = acl_commands({r: "pw" for r in roles()}, prefix="prod:")
    assert all(words[:2] == ["ACL", "SETUSER"] and "reset" in words for words in commands)
    ratelimit = next(w for w in commands if w[2] == "platformdb-ratelimit")
    assert "~prod:ratelimit:*" in ratelimit and ">pw" in ratelimit
    for words in commands:
        rules = set(words[3:])
        assert not rules & {"+eval", "+evalsha", "+script|load", "+script", "+function",
                            "+function|delete", "+function|flush", "+keys", "+@all", "allkeys"}
        if words[2] != "platformdb-migrate":
            assert "+function|load" not in rules
        if words[2] not in ("platformdb-admin", "platformdb-monitor"):  # monitor: key names only
            assert "+scan" not in rules
    with pytest.raises(ConfigError):
        acl_commands({"RATELIMIT": "pw"})  # other roles' passwords missing


@pytest.mark.parametrize("role", SERVICES)
def test_a_service_user_can_neither_load_nor_evaluate_code_nor_list_keys(
    role: str, redis_url: str, acl_users: tuple[str, dict[str, str]]
) -> None:
    suffix, passwords = acl_users
    client = as_user(redis_url, f"platformdb-{role.lower()}{suffix}", passwords[role])
    code = library().code.replace("name=platformdb", "name=evil")
    try:
        refused = [
            ("FUNCTION", "LOAD", "REPLACE", code),
            ("FUNCTION", "DELETE", "platformdb"),
            ("FUNCTION", "FLUSH"),
            ("SCRIPT", "LOAD", "while true do end"),
            ("SCRIPT", "FLUSH"),
            ("EVAL", "while true do end", "0"),
            ("EVALSHA", "a" * 40, "0"),
            ("SCAN", "0"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "*"),
            ("SLOWLOG", "GET"),
            ("MONITOR",),
        ]
        for command in refused:
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()


def test_each_service_works_within_its_own_patterns_and_nowhere_else(
    redis_url: str, redis_client: Redis, redis_prefix: str,
    acl_users: tuple[str, dict[str, str]],
) -> None:
    suffix, passwords = acl_users
    users = {role: as_user(redis_url, f"platformdb-{role.lower()}{suffix}", passwords[role])
             for role in SERVICES}
    p = redis_prefix
    try:
        limiter = RateLimiter(users["RATELIMIT"], Limit(2, 10), prefix=p)
        assert limiter.allow("org_1", "dv360").allowed
        assert limiter.allow_many([("org_1", "dv360")] * 2)[1].allowed is False
        store = SessionStore(users["SESSIONS"], prefix=p)
        session = store.create("user_1", org_id="org_1")
        assert store.get("user_1", session.session_id, org_id="org_1") is not None
        assert store.get("user_1", session.session_id, org_id="org_1", touch=False) is not None
        assert store.sessions("user_1", org_id="org_1") == [session.handle]
        cache = Cache(users["CACHE"], "campaign", prefix=p)
        cache.set("1", {"v": 1}, org_id="org_1", tags=["t"])
        assert cache.get_or_compute("2", lambda: 2, org_id="org_1") == 2
        assert cache.get("1", org_id="org_1") == {"v": 1}
        assert cache.delete_prefix("", org_id="org_1") == 2  # no SCAN needed
        queue = JobQueue(users["QUEUE"], "etl", prefix=p)
        queue.enqueue({"n": 1}, org_id="org_1")
        job = queue.claim()[0]
        assert queue.extend(job) and queue.release(job)
        done: list[Job] = []
        worker = Worker(queue, done.append, block_timeout=0.1)
        thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1})
        thread.start()
        thread.join(timeout=10)
        assert len(done) == 1 and queue.stats().counters["acked"] == 1
        assert queue.wait_for_jobs(0.05) in (True, False)  # BLPOP allowed on its own keys
        EventBus(users["EVENTS"], prefix=p).publish("org_1", "ping")

        # Anything else is refused by the server.
        with pytest.raises(NoPermissionError):
            users["RATELIMIT"].hgetall(f"{p}session:{{org_1:user_1}}")
        with pytest.raises(NoPermissionError):
            users["SESSIONS"].get(f"{p}cache:{{org_1:campaign}}:1")
        with pytest.raises(NoPermissionError):
            users["RATELIMIT"].zcard("ratelimit:{org_1}:{dv360}")  # another prefix
        with pytest.raises(NoPermissionError):
            users["QUEUE"].publish(f"{p}events:{{org_1}}", "x")
        with pytest.raises(NoPermissionError):
            users["EVENTS"].publish("events:{org_1}", "x")  # outside its channel pattern
        with pytest.raises(StoreUnavailable, match="ACL"):
            SessionStore(users["RATELIMIT"], prefix=p).revoke_all("user_1", org_id="org_1")
        with pytest.raises(StoreUnavailable, match="ACL"):
            RateLimiter(users["SESSIONS"], Limit(2, 10), prefix=p).allow("org_1", "dv360")
        assert store.sessions("user_1", org_id="org_1") == [session.handle]
    finally:
        for client in users.values():
            client.close()


def test_the_migrate_user_loads_the_library_and_can_read_no_data(
    scratch_url: str, scratch: Redis
) -> None:
    passwords = {role: uuid.uuid4().hex for role in roles()}
    apply_acl_users(scratch, passwords)
    scratch.set("session:{org_1:user_1}:x", "secret")
    migrator_client = as_user(scratch_url, "platformdb-migrate", passwords["MIGRATE"])
    try:
        migrator = Migrator(RedisDriver(client=migrator_client), migrations())
        assert [s.label for s in migrator.up()] == [migrations()[0].label]
        assert [row.state for row in migrator.status()] == ["applied"]
        with pytest.raises(NoPermissionError):
            migrator_client.get("session:{org_1:user_1}:x")
        with pytest.raises(NoPermissionError):
            migrator_client.fcall("platformdb_session_list", 1, "session:{org_1:user_1}", 1)
        with pytest.raises(NoPermissionError):
            migrator_client.execute_command("FUNCTION", "FLUSH")
        with pytest.raises(NoPermissionError):
            migrator_client.execute_command("EVAL", "return 1", "0")
    finally:
        migrator_client.close()


def test_the_monitor_user_sees_statistics_but_no_arguments(
    redis_url: str, acl_users: tuple[str, dict[str, str]]
) -> None:
    suffix, passwords = acl_users
    client = as_user(redis_url, f"platformdb-monitor{suffix}", passwords["MONITOR"])
    try:
        assert "used_memory" in client.info("memory")
        assert client.slowlog_len() >= 0
        assert client.function_list(library="platformdb")  # is the library loaded?
        with pytest.raises(NoPermissionError):
            client.slowlog_get()  # would show commands' arguments: payloads, cache values
        with pytest.raises(NoPermissionError):
            client.execute_command("MONITOR")
        with pytest.raises((NoPermissionError, ResponseError)):
            client.get("anything")
    finally:
        client.close()


def test_the_admin_user_finds_and_deletes_one_org(
    redis_url: str, redis_client: Redis, redis_prefix: str,
    acl_users: tuple[str, dict[str, str]],
) -> None:
    suffix, passwords = acl_users
    SessionStore(redis_client, prefix=redis_prefix).create("user_1", org_id="org_1")
    JobQueue(redis_client, "etl", prefix=redis_prefix).enqueue({}, org_id="org_1")
    Cache(redis_client, "campaign", prefix=redis_prefix).set("1", 1, org_id="org_1")
    admin = as_user(redis_url, f"platformdb-admin{suffix}", passwords["ADMIN"])
    try:
        assert sum(map(len, org_keys(admin, "org_1", prefix=redis_prefix).values())) == 5
        assert delete_org(admin, "org_1", prefix=redis_prefix) == 5
        with pytest.raises(NoPermissionError):
            admin.execute_command("FUNCTION", "LOAD", "REPLACE", library().code)
    finally:
        admin.close()

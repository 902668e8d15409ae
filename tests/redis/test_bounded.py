"""Big tenants in bounded steps: purges, revocations and cache deletions never run one
unbounded function call, and odd job payloads are dead-lettered, never crash a worker."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import (
    AsyncJobQueue,
    AsyncWorker,
    Cache,
    Job,
    JobQueue,
    SessionStore,
    Worker,
    connect_async,
    delete_org,
    library,
)
from platformdb.redis._fcall import fcall
from platformdb.redis.keys import KeySpace
from platformdb.redis.tenant import PURGE_CHUNK, purge_queue, queue_keys
from tests.redis.helpers import src_env, wait_until

WORKER = Path(__file__).with_name("queue_worker.py")


def raw_jobs(client: Redis, queue: JobQueue, org: str, n: int, *, state: str = "ready",
             start: int = 0, payload: str = '{"n":1}') -> None:
    """``n`` jobs of ``org`` written as an import writes them (fast, no function call)."""
    ready, _processing, _claims, delayed, dead = queue.queue_keys[:5]
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        member = f"{org}:j{i}"
        pipe.hset(f"{ready}:job:{member}", mapping={
            "id": f"j{i}", "org_id": org, "payload": payload, "attempts": 0,
            "max_attempts": 3, "lease": 0, "enqueued_at": 1})
        if state == "delayed":
            pipe.zadd(delayed, {member: 10**13 + i})
        elif state == "dead":
            pipe.rpush(dead, member)
        else:
            pipe.lpush(ready, member)
    pipe.execute()


def members(client: Redis, queue: JobQueue) -> list[str]:
    ready, processing, claims, delayed, dead = queue.queue_keys[:5]
    return (client.lrange(ready, 0, -1) + client.lrange(processing, 0, -1)
            + client.zrange(claims, 0, -1) + client.zrange(delayed, 0, -1)
            + client.lrange(dead, 0, -1))


# ------------------------------------------------------------------ queue purge


def test_a_purge_step_looks_at_count_members_at_most(redis_client: Redis,
                                                     redis_prefix: str) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw_jobs(redis_client, queue, "org_1", 1200)
    raw_jobs(redis_client, queue, "org_2", 300)
    names = queue_keys(queue.queue_keys[0])
    purge = library()["queue_purge_org"]
    cursor, steps, seen = 0, [], 0
    while cursor >= 0:
        cursor, deleted, looked = map(int, fcall(redis_client, purge, names,
                                                 ["org_1", "ready", cursor, 250]))
        steps.append((deleted, looked))
        seen += looked
    assert all(looked <= 250 for _, looked in steps)
    assert len(steps) == math.ceil(1500 / 250) + (1500 % 250 == 0)
    assert sum(d for d, _ in steps) == 1200 and seen == 1500
    left = members(redis_client, queue)
    assert len(left) == 300 and all(m.startswith("org_2:") for m in left)
    assert redis_client.hget(names[7], "purge_steps") == str(len(steps))


def test_purge_queue_deletes_one_org_from_every_structure_in_chunks(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix, visibility_timeout=60)
    for org in ("org_1", "org_2"):
        raw_jobs(redis_client, queue, org, 700)
        raw_jobs(redis_client, queue, org, 300, state="delayed", start=1000)
        raw_jobs(redis_client, queue, org, 200, state="dead", start=2000)
    claimed = queue.claim(count=40)  # the oldest: running, in processing + claims
    assert {j.org_id for j in claimed} == {"org_1"}
    deleted, steps = purge_queue(redis_client, "org_1", queue.queue_keys[0], count=100)
    assert deleted == 1200
    # delayed 600 -> 7 steps, ready 1360 -> 14, processing 40 -> 1, dead 400 -> 5
    assert steps == 7 + 14 + 1 + 5
    left = members(redis_client, queue)
    assert len(left) == 1200 and not any(m.startswith("org_1:") for m in left)
    assert not list(redis_client.scan_iter(match=f"{redis_prefix}queue:{{etl}}:job:org_1:*"))
    for job in claimed:  # a worker still running a purged job lost its lease
        assert queue.ack(job) is False and queue.extend(job) is False
    assert queue.stats().counters["purged"] == 1200
    with pytest.raises(ValidationError):
        purge_queue(redis_client, "org_1", queue.queue_keys[0], count=5001)


@pytest.mark.slow
def test_delete_org_purges_a_big_org_in_steps_while_others_are_served(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw_jobs(redis_client, queue, "org_big", 20_000)
    raw_jobs(redis_client, queue, "org_small", 500)
    names = queue_keys(queue.queue_keys[0])
    worst = 0.0
    done = threading.Event()

    def probe() -> None:  # another client keeps working meanwhile
        nonlocal worst
        while not done.is_set():
            started = time.perf_counter()
            redis_client.ping()
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.002)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        assert delete_org(redis_client, "org_big", prefix=redis_prefix) == 20_000
    finally:
        done.set()
        thread.join()
    steps = int(redis_client.hget(names[7], "purge_steps") or 0)
    assert steps >= 20_500 // PURGE_CHUNK  # bounded chunks, not one call
    assert worst < 2.0  # loose: the old single call blocked the server for seconds
    left = members(redis_client, queue)
    assert len(left) == 500 and all(m.startswith("org_small:") for m in left)


def test_only_a_login_that_may_touch_queueadmin_can_purge(redis_client: Redis,
                                                          redis_prefix: str) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw_jobs(redis_client, queue, "org_1", 3)
    purge = library()["queue_purge_org"]
    wrong = [*queue.queue_keys, queue.queue_keys[0] + ":x"]  # a key ~queue:* allows
    with pytest.raises(ValidationError, match="queueadmin"):
        fcall(redis_client, purge, wrong, ["org_1", "ready", 0, 10])
    with pytest.raises(ValidationError, match="chunked purge"):  # the old, unbounded form
        fcall(redis_client, purge, queue.queue_keys, ["org_1"])
    with pytest.raises(ValidationError, match="structure"):
        fcall(redis_client, purge, queue_keys(queue.queue_keys[0]), ["org_1", "all", 0, 10])
    assert len(members(redis_client, queue)) == 3
    assert queue_keys(queue.queue_keys[0])[7] == KeySpace(redis_prefix).queue_admin("etl")


# ------------------------------------------------------------------ sessions


def test_sessions_per_user_are_capped_when_written(redis_client: Redis,
                                                   redis_prefix: str) -> None:
    with pytest.raises(ValidationError, match=r"1\.\.1000"):
        SessionStore(redis_client, max_sessions=1001)
    store = SessionStore(redis_client, prefix=redis_prefix)
    assert store.max_sessions == 1000  # no cap asked: the library's cap
    index = store.index("org_1", "user_1")[0]
    far = 10**13
    redis_client.hset(index, mapping={f"{i:064x}": far for i in range(1000)})
    create = library()["session_create"]
    handle = "f" * 64
    # an older package asking for no cap (0) or a larger one still gets the cap
    for cap in (0, 5000):
        reply = fcall(redis_client, create, [index, f"{index}:{handle}"],
                      [handle, "user_1", "org_1", "{}", 60_000, 0, cap])
        assert int(reply[2]) == 1 and redis_client.hlen(index) == 1000
        redis_client.hdel(index, handle)
        redis_client.delete(f"{index}:{handle}")
        redis_client.hset(index, f"{10**6 + cap:064x}", far)  # back to 1,000


def test_revoke_all_of_an_oversized_index_takes_bounded_steps(redis_client: Redis,
                                                             redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix)
    index = store.index("org_1", "user_1")[0]
    other = store.index("org_2", "user_1")[0]
    for key in (index, other):  # an index written before the cap: 2,500 handles
        pipe = redis_client.pipeline(transaction=False)
        pipe.hset(key, mapping={f"{i:064x}": 10**13 for i in range(2500)})
        for i in range(2500):
            pipe.hset(f"{key}:{i:064x}", "user_id", "user_1")
        pipe.execute()
    step = fcall(redis_client, library()["session_revoke_all"], [index], [1000])
    assert [int(x) for x in step] == [1000, 1500]
    assert store.revoke_all("user_1", org_id="org_1") == 1500
    assert not redis_client.exists(index)
    assert not list(redis_client.scan_iter(match=f"{index}:*"))
    assert redis_client.hlen(other) == 2500  # another org's user of the same id: untouched
    assert store.revoke_all("user_1", org_id="org_2") == 2500


# ------------------------------------------------------------------ cache


def test_cache_prefix_and_tag_deletes_take_bounded_steps(redis_client: Redis,
                                                        redis_prefix: str) -> None:
    cache = Cache(redis_client, "campaign", prefix=redis_prefix, ttl=600)
    for org in ("org_1", "org_2"):
        scope = cache.scope(org)
        index, base = cache.keys.cache_index(scope), cache.keys.cache_base(scope)
        tag = cache.keys.cache_tag(scope, "camp:1")
        pipe = redis_client.pipeline(transaction=False)
        for i in range(2500):
            pipe.set(f"{base}r:{i}", "1", px=600_000)
            pipe.zadd(index, {f"{base}r:{i}": 10**13})
            pipe.set(f"{base}t:{i}", "1", px=600_000)
            pipe.zadd(index, {f"{base}t:{i}": 10**13})
            pipe.sadd(tag, f"{base}t:{i}")
        pipe.execute()
    scope = cache.scope("org_1")
    index, base = cache.keys.cache_index(scope), cache.keys.cache_base(scope)
    step = fcall(redis_client, library()["cache_delete_prefix"], [index], [f"{base}r:", 0, 1000])
    assert int(step[1]) <= 1000 and int(step[0]) >= 0  # one step, not the whole index
    assert cache.delete_prefix("r:", org_id="org_1") == 2500 - int(step[1])
    step = fcall(redis_client, library()["cache_invalidate_tags"],
                 [index, cache.keys.cache_tag(scope, "camp:1")], [base, 1000])
    assert [int(x) for x in step] == [1000, 1500]
    assert cache.invalidate_tags("camp:1", org_id="org_1") == 1500
    assert redis_client.zcard(index) == 0
    # the other org's entries under the same names: untouched
    assert cache.delete_prefix("", org_id="org_2") == 5000


# ------------------------------------------------------------------ odd payloads


def test_a_worker_dead_letters_unreadable_and_oversized_payloads(
    redis_client: Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix, max_payload=10_000)
    raw_jobs(redis_client, queue, "org_1", 1, payload="not json {", start=0)
    raw_jobs(redis_client, queue, "org_1", 1, payload='"\xff', start=1)
    raw_jobs(redis_client, queue, "org_1", 1, payload="[" * 4000 + "]" * 4000, start=2)  # too deep
    raw_jobs(redis_client, queue, "org_1", 1, payload='"' + "x" * 20_000 + '"', start=3)
    good = queue.enqueue({"ok": True}, org_id="org_1")
    with pytest.raises(ValidationError, match="max_payload"):
        queue.enqueue("x" * 20_000, org_id="org_1")
    handled = []
    worker = Worker(queue, lambda job: handled.append(job.id), block_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="platformdb.redis.queue"):
        assert worker.run(max_jobs=1) == 1
    assert handled == [good]
    dead = {job.id: job for job in queue.dead_letters(org_id="org_1")}
    assert set(dead) == {"j0", "j1", "j2", "j3"}
    assert all(dead[j].last_error.startswith("payload is not JSON") for j in ("j0", "j1", "j2"))
    assert dead["j3"].last_error == "payload is 20002 bytes, over the limit of 10000"
    assert dead["j0"].payload == "not json {"  # shown as stored
    assert queue.stats().dead == 4 and queue.stats().processing == 0
    assert "dead-lettered: payload is not JSON" in caplog.text


def test_the_async_worker_dead_letters_an_unreadable_payload(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw_jobs(redis_client, queue, "org_1", 1, payload="{broken")
    good = queue.enqueue({"ok": True}, org_id="org_1")
    handled: list[str] = []

    async def main() -> int:
        client = connect_async(redis_url)
        try:
            async def handle(job: Job) -> None:
                handled.append(job.id)

            aqueue = AsyncJobQueue(client, "etl", prefix=redis_prefix)
            return await AsyncWorker(aqueue, handle, block_timeout=0.05).run(max_jobs=1)
        finally:
            await client.aclose()

    assert asyncio.run(main()) == 1 and handled == [good]
    [dead] = queue.dead_letters(org_id="org_1")
    assert dead.id == "j0" and (dead.last_error or "").startswith("payload is not JSON")


@pytest.mark.slow
def test_a_worker_process_survives_odd_payloads(redis_url: str, redis_client: Redis,
                                                redis_prefix: str) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw_jobs(redis_client, queue, "org_1", 1, payload="\x00 not json", start=0)
    raw_jobs(redis_client, queue, "org_1", 1, payload='"' + "x" * (1 << 20) + '"', start=1)
    ok = [queue.enqueue({"kind": "ok", "n": i}, org_id="org_1") for i in range(3)]
    process = subprocess.Popen([sys.executable, str(WORKER), redis_url, redis_prefix],
                               env=src_env(), stdout=subprocess.PIPE, text=True)
    try:
        processed = f"{redis_prefix}test:processed"
        assert wait_until(lambda: redis_client.scard(processed) == 3, 20)
        assert process.poll() is None  # still running
        assert redis_client.smembers(processed) == set(ok)
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and "stopped after 3 jobs" in out
    reasons = {job.id: job.last_error or "" for job in queue.dead_letters(org_id="org_1")}
    assert reasons["j0"].startswith("payload is not JSON")
    assert reasons["j1"] == f"payload is {(1 << 20) + 2} bytes, over the limit of {1 << 20}"


def test_older_callers_get_one_bounded_step(redis_client: Redis, redis_prefix: str) -> None:
    """A package of library version 1 calls without the step arguments: it still works."""
    store = SessionStore(redis_client, prefix=redis_prefix)
    store.create("user_1", org_id="org_1")
    index = store.index("org_1", "user_1")
    assert fcall(redis_client, library()["session_revoke_all"], index, []) == 1
    cache = Cache(redis_client, "campaign", prefix=redis_prefix)
    cache.set("a", 1, org_id="org_1", tags=["t"])
    cache.set("b", 2, org_id="org_1")
    scope = cache.scope("org_1")
    idx, base = cache.keys.cache_index(scope), cache.keys.cache_base(scope)
    assert fcall(redis_client, library()["cache_invalidate_tags"],
                 [idx, cache.keys.cache_tag(scope, "t")], [base]) == 1
    assert fcall(redis_client, library()["cache_delete_prefix"], [idx], [base]) == 1


def test_a_claim_moves_a_bounded_number_of_members(redis_client: Redis,
                                                   redis_prefix: str) -> None:
    """Members whose job is gone (a purge the walk missed) are dropped, 1,000 + N per call."""
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2500):
        pipe.lpush(queue.queue_keys[0], f"org_gone:j{i}")
    pipe.execute()
    good = queue.enqueue({"ok": 1}, org_id="org_1")
    reply = fcall(redis_client, library()["queue_claim"], queue.queue_keys,
                  queue.claim_args(1, None, 0))
    assert len(reply) == 3 and int(reply[2]) == 0  # nothing yet; claim again at once
    assert redis_client.llen(queue.queue_keys[0]) == 2501 - 1001
    assert redis_client.llen(queue.queue_keys[1]) == 0  # dropped, not left in processing
    assert [job.id for job in queue.claim(1)] == []
    assert [job.id for job in queue.claim(1)] == [good]


def test_a_payload_that_is_not_utf8_is_dead_lettered(redis_url: str, redis_client: Redis,
                                                    redis_prefix: str) -> None:
    queue = JobQueue(redis_client, "etl", prefix=redis_prefix)
    raw = Redis.from_url(redis_url)  # bytes in and out
    try:
        member = "org_1:bad"
        raw.hset(f"{queue.queue_keys[0]}:job:{member}", mapping={
            "id": "bad", "org_id": "org_1", "payload": b'"\xff\xfe"', "attempts": 0,
            "max_attempts": 3, "lease": 0, "enqueued_at": 1})
        raw.lpush(queue.queue_keys[0], member)
    finally:
        raw.close()
    good = queue.enqueue({"ok": True}, org_id="org_1")
    handled: list[str] = []
    assert Worker(queue, lambda job: handled.append(job.id), block_timeout=0.05).run(
        max_jobs=1) == 1
    assert handled == [good]
    [dead] = queue.dead_letters(org_id="org_1")
    assert dead.id == "bad" and (dead.last_error or "").startswith("payload is not")

"""Reliable job queues: claims with leases, acks, retries, dead letters, fencing."""

from __future__ import annotations

import asyncio

import pytest
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncJobQueue, Job, JobQueue, connect_async, library
from platformdb.redis._fcall import fcall
from tests.redis.helpers import wait_until


def make_queue(client: Redis, prefix: str, **kwargs: object) -> JobQueue:
    options: dict[str, object] = {
        "visibility_timeout": 5.0,
        "max_attempts": 3,
        "backoff": 0.05,
        "max_backoff": 1.0,
    }
    options.update(kwargs)
    return JobQueue(client, "etl", prefix=prefix, **options)  # type: ignore[arg-type]


def expire(client: Redis, queue: JobQueue, job: Job) -> None:
    """Move a lease's deadline to the past, as if its worker had hung that long."""
    client.zadd(queue.queue_keys[2], {f"{job.org_id}:{job.id}": 0}, xx=True)


def test_enqueue_claim_ack_in_order(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    ids = [queue.enqueue({"n": i}, org_id="org_1") for i in range(3)]
    jobs = queue.claim(count=2)
    assert [j.id for j in jobs] == ids[:2]
    assert [j.payload for j in jobs] == [{"n": 0}, {"n": 1}]
    assert all(j.attempt == 1 and j.org_id == "org_1" and not j.lease_lost for j in jobs)
    assert queue.stats().processing == 2
    assert queue.ack(jobs[0]) is True
    assert queue.ack(jobs[0]) is False  # never acked twice
    assert queue.ack(jobs[1]) is True
    stats = queue.stats()
    assert (stats.ready, stats.processing, stats.counters["acked"]) == (1, 0, 2)
    # the spec's key is the ready list, with the job type as hash tag; jobs carry their org
    assert redis_client.type(f"{redis_prefix}queue:{{etl}}") == "list"
    assert redis_client.lrange(f"{redis_prefix}queue:{{etl}}", 0, -1) == [f"org_1:{ids[2]}"]
    assert redis_client.hget(f"{redis_prefix}queue:{{etl}}:job:org_1:{ids[2]}", "org_id") == "org_1"


def test_enqueue_with_an_existing_id_is_a_no_op_for_that_org(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    assert queue.enqueue({"a": 1}, org_id="org_1", job_id="nightly-2026-01-06") == (
        "nightly-2026-01-06"
    )
    queue.enqueue({"a": 2}, org_id="org_1", job_id="nightly-2026-01-06")
    assert queue.stats().ready == 1
    queue.enqueue({"b": 1}, org_id="org_2", job_id="nightly-2026-01-06")  # another org's job
    assert queue.stats().ready == 2
    assert [j.payload for j in queue.claim(count=2)] == [{"a": 1}, {"b": 1}]


def test_delayed_job_waits_and_the_claim_says_how_long(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    queue.enqueue("later", org_id="org_1", delay=0.3)
    claimed = queue._claim(1, None, 100)
    assert claimed.jobs == [] and 0 < claimed.wait_ms <= 300
    assert queue.stats().delayed == 1
    assert wait_until(lambda: bool(queue.claim()), timeout=2.0)
    assert queue._claim(1, None, 100).wait_ms > 4000  # only the lease is left: its deadline


@pytest.mark.slow
def test_time_spent_delayed_or_backing_off_never_counts_against_the_lease(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, visibility_timeout=0.2, backoff=0.4)
    queue.enqueue({"n": 1}, org_id="org_1", delay=0.4)  # delayed longer than a lease
    got: list[Job] = []
    assert wait_until(lambda: got.extend(queue.claim()) or bool(got), timeout=3)
    deadline = redis_client.zscore(queue.queue_keys[2], f"org_1:{got[0].id}")
    now_ms = int(redis_client.time()[0]) * 1000 + int(redis_client.time()[1]) // 1000
    assert deadline is not None and now_ms < deadline <= now_ms + 200  # the clock starts now
    assert queue.retry(got[0], "flaky") == "retried"  # backs off 0.4 s, longer than a lease
    again: list[Job] = []
    assert wait_until(lambda: again.extend(queue.claim()) or bool(again), timeout=3)
    assert again[0].attempt == 2
    counters = queue.stats().counters
    assert "requeued" not in counters and "dead" not in counters  # no lease ever expired
    assert queue.ack(again[0])


def test_retry_backs_off_then_dead_letters(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix, max_attempts=2, backoff=0.2)
    job_id = queue.enqueue({"n": 1}, org_id="org_1")
    job = queue.claim()[0]
    assert queue.retry(job, "timeout talking to DV360") == "retried"
    assert queue.claim() == []  # backing off
    again: list[Job] = []
    assert wait_until(lambda: again.extend(queue.claim()) or bool(again), timeout=2.0)
    assert again[0].attempt == 2
    assert queue.retry(again[0], "still failing") == "dead"
    assert queue.claim() == []
    dead = queue.dead_letters(org_id="org_1")
    assert [d.id for d in dead] == [job_id]
    assert dead[0].status == "dead" and dead[0].last_error == "still failing"
    assert queue.dead_letters(org_id="org_2") == []
    assert queue.redrive(job_id, org_id="org_1") is True
    redriven = queue.claim()[0]
    assert (redriven.id, redriven.attempt) == (job_id, 1)
    # the lease number kept counting: no worker from before the redrive can ack it
    assert redriven.lease.token == 3 and queue.ack(job) is False and queue.ack(again[0]) is False
    assert queue.ack(redriven) is True


def test_an_expired_lease_is_taken_back_and_its_holder_cannot_ack_retry_or_renew(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, backoff=0)
    queue.enqueue({"n": 1}, org_id="org_1")
    first = queue.claim()[0]
    expire(redis_client, queue, first)
    second = queue.claim()[0]
    assert (second.id, second.attempt) == (first.id, 2)
    assert second.lease.token == first.lease.token + 1
    assert queue.ack(first) is False
    assert queue.retry(first, "late") == "lost"
    assert queue.extend(first) is False
    assert queue.release(first) is False
    assert queue.ack(second) is True
    assert queue.stats().counters["requeued"] == 1


def test_extend_renews_the_lease(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    queue.enqueue({"n": 1}, org_id="org_1")
    job = queue.claim(visibility=0.05)[0]
    member = f"org_1:{job.id}"
    before = redis_client.zscore(queue.queue_keys[2], member)
    assert queue.extend(job, visibility=60)
    after = redis_client.zscore(queue.queue_keys[2], member)
    assert before is not None and after is not None and after >= before + 59_000
    assert queue.requeue_expired() == (0, 0)
    assert queue.claim() == []
    assert queue.ack(job)


def test_release_hands_the_job_back_without_counting_the_attempt(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    first_id = queue.enqueue({"n": 1}, org_id="org_1")
    queue.enqueue({"n": 2}, org_id="org_1")
    job = queue.claim()[0]
    assert queue.release(job) is True
    assert queue.release(job) is False
    assert queue.ack(job) is False  # fenced: the releasing worker is done with it
    again = queue.claim()[0]  # released jobs go to the head of the queue
    assert (again.id, again.attempt) == (first_id, 1)
    assert queue.stats().counters["released"] == 1
    assert queue.ack(again)


def test_requeue_expired_dead_letters_exhausted_jobs(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, max_attempts=1)
    queue.enqueue({"n": 1}, org_id="org_1")
    queue.enqueue({"n": 2}, org_id="org_1", max_attempts=2)
    for job in queue.claim(count=2):
        expire(redis_client, queue, job)
    assert queue.requeue_expired() == (1, 1)
    assert queue.stats().dead == 1


def test_cancel_and_get_are_scoped_to_the_org(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    claimed = queue.enqueue({"n": 1}, org_id="org_1")
    waiting = queue.enqueue({"n": 2}, org_id="org_1")
    later = queue.enqueue({"n": 3}, org_id="org_1", delay=60)
    assert queue.claim()[0].id == claimed  # FIFO
    statuses = {jid: queue.get(jid, org_id="org_1") for jid in (claimed, waiting, later)}
    assert {jid: info.status for jid, info in statuses.items() if info} == {
        claimed: "running",
        waiting: "ready",
        later: "delayed",
    }
    assert queue.get(waiting, org_id="org_2") is None
    assert queue.cancel(claimed, org_id="org_1") is False  # running
    assert queue.cancel(waiting, org_id="org_2") is False
    assert queue.cancel(waiting, org_id="org_1") is True
    assert queue.get(waiting, org_id="org_1") is None
    assert queue.cancel(later, org_id="org_1") is True
    assert queue.stats().delayed == 0


def test_wait_for_jobs_blocks_until_an_enqueue_wakes_it(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    assert queue.wait_for_jobs(0.05) is False
    queue.enqueue({"n": 1}, org_id="org_1")
    assert queue.wait_for_jobs(5) is True  # returns at once: a token is waiting
    for n in range(100):
        queue.enqueue({"n": n}, org_id="org_1")
    assert redis_client.llen(queue.wake_key) == 64  # capped: wake-ups, not a second queue


def test_async_queue(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        client = connect_async(redis_url)
        queue = AsyncJobQueue(client, "notify", backoff=0, max_attempts=2, prefix=redis_prefix)
        try:
            ids = await queue.enqueue_many([("org_1", {"n": n}) for n in range(3)])
            jobs = await queue.claim(count=3)
            assert [j.id for j in jobs] == ids
            assert await queue.extend(jobs[0])
            assert await queue.ack(jobs[0])
            assert await queue.retry(jobs[1], "x") == "retried"
            assert await queue.release(jobs[2])
            assert await queue.wait_for_jobs(1) is True
            job_id = await queue.enqueue({"n": 99}, org_id="org_1", delay=60)
            info = await queue.get(job_id, org_id="org_1")
            assert info is not None and info.status == "delayed"
            assert await queue.cancel(job_id, org_id="org_1")
            assert (await queue.stats()).counters["acked"] == 1
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("payload", "kwargs"),
    [
        (object(), {"org_id": "org_1"}),
        ({"x": float("inf")}, {"org_id": "org_1"}),
        ({1, 2}, {"org_id": "org_1"}),
        ({}, {"org_id": ""}),
        ({}, {"org_id": "org:1"}),
        ({}, {"org_id": "org_1", "delay": -1}),
        ({}, {"org_id": "org_1", "max_attempts": 0}),
        ({}, {"org_id": "org_1", "job_id": "has space"}),
        ({}, {"org_id": "org_1", "job_id": ""}),
    ],
)
def test_bad_job_input_is_rejected(
    redis_client: Redis, redis_prefix: str, payload: object, kwargs: dict[str, object]
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    with pytest.raises(ValidationError):
        queue.enqueue(payload, **kwargs)  # type: ignore[arg-type]
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []


def test_bad_queue_settings_are_rejected(redis_client: Redis, redis_prefix: str) -> None:
    for job_type in ("", "etl:x", "{etl}"):
        with pytest.raises(ValidationError):
            JobQueue(redis_client, job_type)
    with pytest.raises(ValidationError):
        make_queue(redis_client, redis_prefix, visibility_timeout=0)
    with pytest.raises(ValidationError):
        make_queue(redis_client, redis_prefix).claim(count=1001)


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("queue_enqueue", ["org_1", "j1", "{}", "0", "0"]),
        ("queue_enqueue", ["org_1", "j1", "{}", "3", "-1"]),
        ("queue_enqueue", ["org_1", "", "{}", "3", "0"]),
        ("queue_claim", ["1", "0", "0", "0", "0"]),
        ("queue_claim", ["abc", "1000", "0", "0", "0"]),
        ("queue_ack", ["org_1", "j1", "not-a-token"]),
        ("queue_retry", ["org_1", "j1", "1", "err", "-1", "0", "-1"]),
        ("queue_release", ["org_1", "", "1"]),
        ("queue_purge_org", [""]),
    ],
)
def test_queue_functions_refuse_bad_arguments(
    redis_client: Redis, redis_prefix: str, function: str, args: list[str]
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    with pytest.raises(ValidationError, match=function):
        fcall(redis_client, library()[function], queue.queue_keys, args)
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []

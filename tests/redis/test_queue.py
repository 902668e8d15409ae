"""Reliable job queues: claims, acks, retries, dead letters, workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import AsyncJobQueue, AsyncWorker, Job, JobQueue, Worker, connect_async
from platformdb.redis.scripts import registry
from tests.redis.helpers import src_env, wait_until

WORKER = Path(__file__).with_name("queue_worker.py")
TOTAL = 10_000
POISON = 40
SLOW = 10


def make_queue(client: Redis, prefix: str, **kwargs: object) -> JobQueue:
    options: dict[str, object] = {
        "visibility_timeout": 5.0,
        "max_attempts": 3,
        "backoff": 0.05,
        "max_backoff": 1.0,
    }
    options.update(kwargs)
    return JobQueue(client, "etl", prefix=prefix, **options)  # type: ignore[arg-type]


def test_enqueue_claim_ack_in_order(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    ids = [queue.enqueue({"n": i}, org_id="org_1") for i in range(3)]
    jobs = queue.claim(count=2)
    assert [j.id for j in jobs] == ids[:2]
    assert [j.payload for j in jobs] == [{"n": 0}, {"n": 1}]
    assert all(j.attempt == 1 and j.org_id == "org_1" for j in jobs)
    assert queue.stats().processing == 2
    assert queue.ack(jobs[0]) is True
    assert queue.ack(jobs[0]) is False  # never acked twice
    assert queue.ack(jobs[1]) is True
    stats = queue.stats()
    assert (stats.ready, stats.processing, stats.counters["acked"]) == (1, 0, 2)
    # the spec's key is the ready list, with the job type as hash tag
    assert redis_client.type(f"{redis_prefix}queue:{{etl}}") == "list"


def test_enqueue_with_an_existing_id_is_a_no_op(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    assert queue.enqueue({"a": 1}, org_id="org_1", job_id="nightly-2026-01-06") == (
        "nightly-2026-01-06"
    )
    queue.enqueue({"a": 2}, org_id="org_1", job_id="nightly-2026-01-06")
    assert queue.stats().ready == 1
    assert queue.claim()[0].payload == {"a": 1}


def test_delayed_job_waits(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    queue.enqueue("later", org_id="org_1", delay=0.3)
    assert queue.claim() == []
    assert queue.stats().delayed == 1
    assert wait_until(lambda: bool(queue.claim()), timeout=2.0)


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


def test_expired_claim_is_requeued_and_the_old_claim_cannot_ack(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, backoff=0)
    queue.enqueue({"n": 1}, org_id="org_1")
    first = queue.claim(visibility=0.2)[0]
    time.sleep(0.25)
    second = queue.claim()[0]
    assert (second.id, second.attempt) == (first.id, 2)
    assert queue.ack(first) is False
    assert queue.retry(first, "late") == "lost"
    assert queue.extend(first) is False
    assert queue.ack(second) is True
    assert queue.stats().counters["requeued"] == 1


def test_extend_keeps_the_claim(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix)
    queue.enqueue({"n": 1}, org_id="org_1")
    job = queue.claim(visibility=0.2)[0]
    assert queue.extend(job, visibility=5)
    time.sleep(0.25)
    assert queue.requeue_expired() == (0, 0)
    assert queue.claim() == []
    assert queue.ack(job)


def test_requeue_expired_dead_letters_exhausted_jobs(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, max_attempts=1)
    queue.enqueue({"n": 1}, org_id="org_1")
    queue.enqueue({"n": 2}, org_id="org_1", max_attempts=2)
    queue.claim(count=2, visibility=0.1)
    time.sleep(0.15)
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


def test_worker_acks_successes_and_retries_failures(redis_client: Redis, redis_prefix: str) -> None:
    queue = make_queue(redis_client, redis_prefix, max_attempts=2, backoff=0)
    for n in range(20):
        queue.enqueue({"n": n}, org_id="org_1")
    seen: list[int] = []

    def handle(job: Job) -> None:
        seen.append(job.payload["n"])
        if job.payload["n"] % 5 == 0:
            raise RuntimeError("boom")

    stop = threading.Event()
    worker = Worker(queue, handle, poll_interval=0.05, stop_event=stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert wait_until(lambda: queue.stats().counters.get("acked", 0) == 16, timeout=10)
    assert wait_until(lambda: queue.stats().dead == 4, timeout=10)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert sorted(set(seen)) == list(range(20))
    assert len(seen) == 24  # four failing jobs ran twice


def test_sigterm_lets_the_worker_finish_its_job_then_exit(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    job_id = queue.enqueue({"n": 1, "kind": "slow"}, org_id="org_1")
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), redis_url, redis_prefix],
        env=src_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(
            lambda: bool(list(redis_client.scan_iter(match=f"{redis_prefix}test:busy:*"))), 10
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "stopped after 1 jobs" in out
    assert redis_client.sismember(f"{redis_prefix}test:processed", job_id)
    stats = queue.stats()
    assert (stats.ready, stats.processing, stats.counters["acked"]) == (0, 0, 1)


@pytest.mark.slow
def test_ten_thousand_jobs_survive_killed_workers(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(
        redis_client, redis_prefix, visibility_timeout=1.0, backoff=0.01, max_backoff=0.05
    )
    kinds = ["ok"] * TOTAL
    for i in range(POISON):
        kinds[50 + i * 200] = "poison"
    for i in range(SLOW):
        kinds[30 + i * 150] = "slow"
    ids = queue.enqueue_many(
        (f"org_{n % 7}", {"n": n, "kind": kind}) for n, kind in enumerate(kinds)
    )
    poison_ids = {job_id for job_id, kind in zip(ids, kinds, strict=True) if kind == "poison"}
    assert queue.stats().ready == TOTAL

    def spawn() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(WORKER), redis_url, redis_prefix],
            env=src_env(),
            stdout=subprocess.PIPE,
            text=True,
        )

    workers = [spawn() for _ in range(4)]
    killed: dict[int, str] = {}
    try:
        # Kill two workers with SIGKILL while each is inside a job.
        deadline = time.monotonic() + 60
        while len(killed) < 2 and time.monotonic() < deadline:
            for key in redis_client.scan_iter(match=f"{redis_prefix}test:busy:*"):
                pid = int(key.rsplit(":", 1)[1])
                job_id = redis_client.get(key)
                alive = {w.pid for w in workers if w.poll() is None}
                if pid in alive and pid not in killed and job_id and len(killed) < 2:
                    os.kill(pid, signal.SIGKILL)
                    killed[pid] = job_id
            time.sleep(0.01)
        assert len(killed) == 2
        workers.append(spawn())  # a replacement joins half-way

        def finished() -> bool:
            counters = queue.stats().counters
            return counters.get("acked", 0) + counters.get("dead", 0) >= TOTAL

        assert wait_until(finished, timeout=150, interval=0.1)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        codes = {w.pid: w.wait(timeout=15) for w in workers}
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            if worker.stdout:
                worker.stdout.close()

    assert all(codes[pid] == -signal.SIGKILL for pid in killed)
    assert all(code == 0 for pid, code in codes.items() if pid not in killed)

    stats = queue.stats()
    assert (stats.ready, stats.processing, stats.delayed) == (0, 0, 0)
    assert stats.counters["enqueued"] == TOTAL
    assert stats.counters["dead"] == POISON
    assert stats.counters["acked"] == TOTAL - POISON
    assert stats.counters["requeued"] >= 2  # the killed workers' jobs came back
    assert redis_client.zcard(queue.queue_keys[2]) == 0  # no claim left
    assert set(redis_client.lrange(queue.queue_keys[4], 0, -1)) == poison_ids

    # Acked exactly once: an ack deletes the job hash and counts, atomically, and a
    # second ack of the same claim finds nothing; so acked == deleted hashes.
    pipe = redis_client.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(queue.keys.job("etl", job_id))
    exists = dict(zip(ids, pipe.execute(), strict=True))
    gone = {job_id for job_id, e in exists.items() if e == 0}
    assert gone == set(ids) - poison_ids
    assert len(gone) == stats.counters["acked"]
    # None lost: every acked job ran to completion, including the killed ones.
    processed = redis_client.smembers(f"{redis_prefix}test:processed")
    assert processed == gone
    assert set(killed.values()) <= processed
    for job_id in poison_ids:
        info = queue.get(job_id, org_id=redis_client.hget(queue.keys.job("etl", job_id), "org_id"))
        assert info is not None and info.attempts == 3 and info.last_error.startswith("ValueError")


def test_async_queue_and_worker(redis_url: str, redis_prefix: str) -> None:
    async def main() -> tuple[int, dict[str, int]]:
        client = connect_async(redis_url)
        queue = AsyncJobQueue(client, "notify", backoff=0, max_attempts=2, prefix=redis_prefix)
        try:
            await queue.enqueue_many([("org_1", {"n": n}) for n in range(30)])
            await queue.enqueue({"n": "bad"}, org_id="org_1")
            done: list[int] = []

            async def handle(job: Job) -> None:
                if job.payload["n"] == "bad":
                    raise ValueError("bad")
                done.append(job.payload["n"])

            worker = AsyncWorker(queue, handle, poll_interval=0.05)
            task = asyncio.create_task(worker.run())
            for _ in range(200):
                stats = await queue.stats()
                if stats.counters.get("acked", 0) == 30 and stats.dead == 1:
                    break
                await asyncio.sleep(0.02)
            worker.stop()
            await asyncio.wait_for(task, timeout=5)
            job_id = await queue.enqueue({"n": 99}, org_id="org_1", delay=60)
            assert (await queue.get(job_id, org_id="org_1")).status == "delayed"  # type: ignore[union-attr]
            assert await queue.cancel(job_id, org_id="org_1")
            return len(done), (await queue.stats()).counters
        finally:
            await client.aclose()

    done, counters = asyncio.run(main())
    assert done == 30
    assert counters["acked"] == 30 and counters["dead"] == 1


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
    ("script", "args"),
    [
        ("queue_enqueue", ["j1", "org_1", "{}", "0", "0"]),
        ("queue_enqueue", ["j1", "org_1", "{}", "3", "-1"]),
        ("queue_enqueue", ["", "org_1", "{}", "3", "0"]),
        ("queue_claim", ["1", "0", "0", "0", "0"]),
        ("queue_claim", ["abc", "1000", "0", "0", "0"]),
        ("queue_ack", ["j1", "not-a-token"]),
        ("queue_retry", ["j1", "1", "err", "-1", "0", "-1"]),
    ],
)
def test_queue_scripts_refuse_bad_arguments(
    redis_client: Redis, redis_prefix: str, script: str, args: list[str]
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    with pytest.raises(ValidationError, match=script):
        registry().run(redis_client, script, queue.queue_keys, args)
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []

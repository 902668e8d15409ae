"""Workers: leases renewed by heartbeats, fencing, blocking claims, SIGTERM, the same logs.

``Worker`` is generated from ``AsyncWorker`` (tools/async_to_sync.py); the
behaviours here run against both, and the 10,000-job test kills real worker
processes mid-job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.client import Redis

from platformdb.redis import (
    AsyncJobQueue,
    AsyncWorker,
    Job,
    JobQueue,
    Worker,
    connect,
    connect_async,
    functions,
)
from tests.redis.helpers import src_env, wait_until

WORKER = Path(__file__).with_name("queue_worker.py")
KINDS = ["sync", "async"]
TOTAL = 10_000
POISON = 40
SLOW = 10


def make_queue(client: Redis, prefix: str, **kwargs: object) -> JobQueue:
    options: dict[str, object] = {"visibility_timeout": 5.0, "max_attempts": 3,
                                  "backoff": 0.05, "max_backoff": 1.0}
    options.update(kwargs)
    return JobQueue(client, "etl", prefix=prefix, **options)  # type: ignore[arg-type]


class Running:
    """A Worker (in a thread) or an AsyncWorker (in its own event loop, in a thread)."""

    def __init__(self, kind: str, url: str, prefix: str, handler: Callable[[Job], None],
                 queue_options: dict[str, Any], **worker_options: Any) -> None:
        self.kind = kind
        self.stopped = threading.Event()
        self._stop: Callable[[], None] = lambda: None
        ready = threading.Event()

        def run_sync() -> None:
            client = connect(url)
            worker = Worker(JobQueue(client, "etl", prefix=prefix, **queue_options), handler,
                            **worker_options)
            self._stop = worker.stop
            ready.set()
            worker.run()
            client.close()

        def run_async() -> None:
            async def main() -> None:
                client = connect_async(url)
                loop = asyncio.get_running_loop()

                async def handle(job: Job) -> None:
                    await loop.run_in_executor(None, handler, job)

                worker = AsyncWorker(AsyncJobQueue(client, "etl", prefix=prefix, **queue_options),
                                     handle, **worker_options)
                self._stop = lambda: loop.call_soon_threadsafe(worker.stop)
                ready.set()
                await worker.run()
                await client.aclose()

            asyncio.run(main())

        def target() -> None:
            try:
                (run_sync if kind == "sync" else run_async)()
            finally:
                self.stopped.set()

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self, timeout: float = 10) -> None:
        self._stop()
        assert self.stopped.wait(timeout), "the worker did not stop"
        self.thread.join(timeout)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    workers: list[Running] = []
    yield workers
    for worker in workers:
        if not worker.stopped.is_set():
            worker.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_acks_successes_and_retries_failures(
    kind: str, redis_url: str, redis_client: Redis, redis_prefix: str, running: list[Running]
) -> None:
    options = {"max_attempts": 2, "backoff": 0}
    queue = make_queue(redis_client, redis_prefix, **options)
    for n in range(20):
        queue.enqueue({"n": n}, org_id="org_1")
    seen: list[int] = []

    def handle(job: Job) -> None:
        seen.append(job.payload["n"])
        if job.payload["n"] % 5 == 0:
            raise RuntimeError("boom")

    running.append(Running(kind, redis_url, redis_prefix, handle, options, block_timeout=0.1))
    assert wait_until(lambda: queue.stats().counters.get("acked", 0) == 16, timeout=10)
    assert wait_until(lambda: queue.stats().dead == 4, timeout=10)
    running[0].stop()
    assert sorted(set(seen)) == list(range(20))
    assert len(seen) == 24  # four failing jobs ran twice


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_a_handler_longer_than_the_lease_runs_once_because_the_heartbeat_renews_it(
    kind: str, redis_url: str, redis_client: Redis, redis_prefix: str, running: list[Running]
) -> None:
    options = {"visibility_timeout": 0.3, "backoff": 0}
    queue = make_queue(redis_client, redis_prefix, **options)
    job_id = queue.enqueue({"n": 1}, org_id="org_1")
    runs: list[str] = []

    def handle(job: Job) -> None:
        runs.append(job.id)
        time.sleep(1.2)  # four lease lengths: a slow DSP export
        assert not job.lease_lost

    for _ in range(2):  # a second worker waits for the job to come back: it must not
        running.append(Running(kind, redis_url, redis_prefix, handle, options,
                               heartbeat=0.1, block_timeout=0.1))
    assert wait_until(lambda: queue.stats().counters.get("acked", 0) == 1, timeout=10)
    assert runs == [job_id]
    assert "requeued" not in queue.stats().counters


@pytest.mark.slow
def test_without_renewal_a_second_worker_takes_the_job_and_the_first_cannot_ack(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix, visibility_timeout=0.3)
    job_id = queue.enqueue({"n": 1, "kind": "slow", "seconds": 1.0, "first_run_only": True},
                           org_id="org_1")
    procs = [subprocess.Popen([sys.executable, str(WORKER), redis_url, redis_prefix,
                               "--visibility", "0.3", "--heartbeat", "0"],
                              env=src_env(), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        assert wait_until(lambda: queue.stats().counters.get("acked", 0) == 1, timeout=15)
        assert wait_until(lambda: redis_client.hget(f"{redis_prefix}test:runs", job_id) == "2"
                          and not any(redis_client.scan_iter(match=f"{redis_prefix}test:busy:*")),
                          timeout=15)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=15)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert queue.stats().counters["acked"] == 1  # ran twice, acked once: the fence held
    assert queue.stats().counters["requeued"] == 1
    lost = [out for out in outputs if "finished after its lease was lost; not acked" in out]
    assert len(lost) == 1 and f"job etl/{job_id}" in lost[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_handler_is_told_when_its_lease_is_lost_and_is_never_acked(
    kind: str, redis_url: str, redis_client: Redis, redis_prefix: str, running: list[Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    job_id = queue.enqueue({"n": 1}, org_id="org_1")
    told = threading.Event()
    started = threading.Event()

    def handle(job: Job) -> None:
        started.set()
        deadline = time.monotonic() + 10
        while not job.lease_lost and time.monotonic() < deadline:
            time.sleep(0.01)  # a long job that checks in between its steps
        if job.lease_lost:
            told.set()

    caplog.set_level(logging.WARNING, logger="platformdb.redis.queue")
    running.append(Running(kind, redis_url, redis_prefix, handle, {}, heartbeat=0.05,
                           block_timeout=0.1))
    assert started.wait(10)
    # Another party takes the job back (what an expired lease looks like to the worker).
    redis_client.zadd(queue.queue_keys[2], {f"org_1:{job_id}": 0}, xx=True)
    assert queue.requeue_expired() == (1, 0)
    assert queue.cancel(job_id, org_id="org_1")  # backing off: not claimed again meanwhile
    assert told.wait(10)
    running[0].stop()
    assert "acked" not in queue.stats().counters
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"job etl/{job_id} lost its lease" in m for m in messages)
    assert any(f"job etl/{job_id} finished after its lease was lost" in m for m in messages)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_an_idle_worker_blocks_and_starts_a_new_job_within_milliseconds(
    kind: str, scratch_url: str, scratch: Redis, running: list[Running]
) -> None:
    functions.load(scratch)
    queue = make_queue(scratch, "")
    started: list[float] = []
    running.append(Running(kind, scratch_url, "", lambda job: started.append(time.monotonic()),
                           {}, block_timeout=2.0))
    assert wait_until(lambda: any(c["cmd"] == "blpop" for c in scratch.client_list()), timeout=5)
    before = int(scratch.info("stats")["total_commands_processed"])
    time.sleep(1.0)  # idle: the worker sits in one BLPOP
    idle_commands = int(scratch.info("stats")["total_commands_processed"]) - before - 1
    assert idle_commands <= 2
    latencies = []
    for n in range(5):
        enqueued = time.monotonic()
        queue.enqueue({"n": n}, org_id="org_1")
        assert wait_until(lambda n=n: len(started) == n + 1, timeout=5, interval=0.001)
        latencies.append(started[-1] - enqueued)
        assert wait_until(lambda: any(c["cmd"] == "blpop" for c in scratch.client_list()), 5)
    assert sorted(latencies)[2] < 0.05, latencies  # the median, on a loaded CI machine too


def start_worker(url: str, prefix: str, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), url, prefix, *options],
                            env=src_env(), stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigterm_lets_the_running_job_finish_within_the_grace_period(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    job_id = queue.enqueue({"n": 1, "kind": "slow", "seconds": 0.5}, org_id="org_1")
    proc = start_worker(redis_url, redis_prefix, "--grace", "30")
    try:
        assert wait_until(
            lambda: bool(list(redis_client.scan_iter(match=f"{redis_prefix}test:busy:*"))), 10)
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
def test_sigterm_releases_a_job_that_outlives_the_grace_period(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    queue = make_queue(redis_client, redis_prefix)
    job_id = queue.enqueue({"n": 1, "kind": "slow", "seconds": 3}, org_id="org_1")
    proc = start_worker(redis_url, redis_prefix, "--grace", "0.3")
    try:
        assert wait_until(
            lambda: bool(list(redis_client.scan_iter(match=f"{redis_prefix}test:busy:*"))), 10)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert wait_until(lambda: queue.stats().counters.get("released", 0) == 1, timeout=5)
        assert time.monotonic() - signalled < 2.0
        stats = queue.stats()
        assert (stats.ready, stats.processing) == (1, 0)
        again = queue.claim()[0]  # another worker gets it at once, its attempt not counted
        assert (again.id, again.attempt) == (job_id, 1)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "did not finish within the 0.3s grace period; released back to the queue" in out
    assert "finished after its lease was lost; not acked" in out
    assert queue.ack(again) and queue.stats().counters["acked"] == 1


def scenario(kind: str, url: str, prefix: str) -> list[tuple[str, str]]:
    """One run through every outcome a worker logs; its (level, message) records."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("platformdb.redis.queue")
    keep = Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    client = connect(url)
    queue = make_queue(client, prefix, max_attempts=2, backoff=0)
    try:
        for name in ("ok", "fails", "lost"):
            queue.enqueue({"kind": name}, org_id="org_1", job_id=name)

        def handle(job: Job) -> None:
            if job.payload["kind"] == "fails":
                raise ValueError("bad input")
            if job.payload["kind"] == "lost":
                client.zadd(queue.queue_keys[2], {"org_1:lost": 0}, xx=True)
                queue.requeue_expired()
                wait_until(lambda: job.lease_lost, timeout=5)
                queue.cancel("lost", org_id="org_1")

        worker = Running(kind, url, prefix, handle, {"max_attempts": 2, "backoff": 0},
                         heartbeat=0.05, block_timeout=0.1)
        assert wait_until(lambda: queue.stats().counters.get("dead", 0) == 1
                          and queue.stats().counters.get("acked", 0) == 1, timeout=10)
        worker.stop()
    finally:
        logger.removeHandler(keep)
        client.close()
    return [(r.levelname, r.getMessage()) for r in records]


def test_both_workers_log_the_same_things(redis_url: str, redis_prefix: str) -> None:
    sync, async_ = (scenario(kind, redis_url, f"{redis_prefix}{kind}:") for kind in KINDS)
    assert sync == async_
    messages = [message for _, message in sync]
    assert "job etl/fails failed (retried): bad input" in messages
    assert "job etl/fails failed (dead): bad input" in messages
    assert any(m.startswith("job etl/lost lost its lease") for m in messages)
    assert "job etl/lost finished after its lease was lost; not acked" in messages
    assert any(m.startswith("worker etl: stopping") for m in messages)


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
    orgs = {job_id: f"org_{n % 7}" for n, job_id in enumerate(ids)}
    poison_ids = {job_id for job_id, kind in zip(ids, kinds, strict=True) if kind == "poison"}
    assert queue.stats().ready == TOTAL

    workers = [start_worker(redis_url, redis_prefix) for _ in range(4)]
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
        workers.append(start_worker(redis_url, redis_prefix))  # a replacement joins half-way

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
    assert redis_client.zcard(queue.queue_keys[2]) == 0  # no lease left
    assert set(redis_client.lrange(queue.queue_keys[4], 0, -1)) == {
        f"{orgs[j]}:{j}" for j in poison_ids}

    # Acked exactly once: an ack deletes the job hash and counts, atomically, and a
    # second ack of the same lease finds nothing; so acked == deleted hashes.
    pipe = redis_client.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(queue.keys.job("etl", orgs[job_id], job_id))
    exists = dict(zip(ids, pipe.execute(), strict=True))
    gone = {job_id for job_id, e in exists.items() if e == 0}
    assert gone == set(ids) - poison_ids
    assert len(gone) == stats.counters["acked"]
    # None lost: every acked job ran to completion, including the killed ones.
    processed = redis_client.smembers(f"{redis_prefix}test:processed")
    assert processed == gone
    assert set(killed.values()) <= processed
    for job_id in poison_ids:
        info = queue.get(job_id, org_id=orgs[job_id])
        assert info is not None and info.attempts == 3
        assert info.last_error is not None and info.last_error.startswith("ValueError")

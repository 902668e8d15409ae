# Generated from queue_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
"""Reliable job queues, ``queue:{job_type}``, and the workers that run them.

A job of an org is enqueued (now or after a delay), claimed by a worker with
a **lease** (the visibility timeout), then acked, retried with exponential
backoff, or dead-lettered after ``max_attempts``. A worker renews its lease
while the handler runs (a heartbeat: a task here, a thread in the blocking
twin), so a long job is never handed to a second worker; a worker that dies
stops renewing, its lease expires and the next claim takes the job back.

Every claim carries a fencing token (the lease number): ack, retry, renew and
release must present it, so a worker that lost its lease can no longer ack or
retry the job, whatever it does, and learns it (``job.lease_lost``).

Idle workers block on the queue's wake-up list (``BLPOP``, one key, so also
on a Cluster) instead of polling: a new job starts within milliseconds and an
idle worker costs one blocked connection. Time a job spends delayed (a delay,
a backoff) never counts against its lease: the clock starts at the claim.

Queues are shared by every org; each job names its org, and its key carries
it (``queue:{etl}:job:<org_id>:<job_id>``): reading, cancelling or redriving
a job needs its org's id, and another org's job with the same id is another
job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import PlatformDBError
from platformdb.redis import codec
from platformdb.redis._acompat import Event, install_signals, join, spawn, wait_flag
from platformdb.redis._fcall import fcall, fcall_many
from platformdb.redis._queue import (
    REAP_PER_CLAIM,
    Claimed,
    Job,
    JobInfo,
    QueueCore,
    QueueStats,
    RetryOutcome,
    seconds_ms,
)
from platformdb.redis.client import SyncClient
from platformdb.redis.functions import translate
from platformdb.redis.keys import check_id

log = logging.getLogger("platformdb.redis.queue")

MIN_BLOCK = 0.01  # BLPOP with a timeout that rounds to 0 ms would block forever


class JobQueue(QueueCore):
    """One job type's queue. Times are seconds.

    ``visibility_timeout``: how long a lease lasts unless renewed;
    ``backoff``/``max_backoff``: retry n waits ``backoff * 2**(n-1)`` seconds,
    at most ``max_backoff``.
    """

    def __init__(
        self,
        client: SyncClient,
        job_type: str,
        *,
        visibility_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        max_payload: int = codec.MAX_VALUE_BYTES,
        prefix: str = "",
    ) -> None:
        super().__init__(
            job_type,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            max_payload=max_payload,
            prefix=prefix,
        )
        self.client = client

    def enqueue(
        self,
        payload: Any,
        *,
        org_id: str,
        delay: float = 0.0,
        job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a job for ``org_id``; its id. A job id this org already has is not added twice."""
        args = self.enqueue_args(payload, org_id, delay, job_id, max_attempts)
        fcall(self.client, self.f_enqueue, self.queue_keys, args)
        return str(args[1])

    def enqueue_many(
        self, jobs: Iterable[tuple[str, Any]], *, delay: float = 0.0
    ) -> list[str]:
        """Add many (org_id, payload) jobs in one pipeline; their ids."""
        calls = [self.enqueue_args(payload, org, delay, None, None) for org, payload in jobs]
        fcall_many(self.client, self.f_enqueue, [(self.queue_keys, a) for a in calls])
        return [str(args[1]) for args in calls]

    def claim(self, count: int = 1, *, visibility: float | None = None) -> list[Job]:
        """Claim up to ``count`` ready jobs (expired leases are taken back first)."""
        return (self._claim(count, visibility, REAP_PER_CLAIM)).jobs

    def _claim(self, count: int, visibility: float | None, reap: int) -> Claimed:
        args = self.claim_args(count, visibility, reap)
        claimed = self.claimed(fcall(self.client, self.f_claim, self.queue_keys, args))
        dead = 0
        for job, reason in claimed.unreadable:
            # no handler can read it and no retry can help: dead-letter it with the reason
            args = self.retry_args(job, reason, None, dead=True)
            outcome = self.outcome(fcall(self.client, self.f_retry, self.queue_keys, args))
            dead += outcome == "dead"
            log.warning("queue %s: job %s of org %s dead-lettered: %s", self.job_type, job.id,
                        job.org_id, reason)
        if not claimed.unreadable:
            return claimed
        wait = 0 if not claimed.jobs else claimed.wait_ms  # more may be ready: do not block
        return Claimed(claimed.jobs, claimed.requeued, claimed.dead_lettered + dead, wait)

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until a job may be ready (a wake-up token) or ``timeout`` seconds pass.

        ``timeout`` must stay below the client's socket timeout (10 s by default).
        """
        redis: Any = self.client
        try:
            return redis.blpop([self.wake_key], max(timeout, MIN_BLOCK)) is not None
        except RedisError as exc:
            raise translate(exc) from exc

    def ack(self, job: Job) -> bool:
        """Mark a claimed job done. False when its lease was lost (expired, released, acked)."""
        return bool(fcall(self.client, self.f_ack, self.queue_keys, self.own(job)))

    def retry(self, job: Job, error: str = "", *, delay: float | None = None) -> RetryOutcome:
        """Give a failed job back: "retried" later, "dead" when out of attempts, or
        "lost" when this worker no longer holds the lease (nothing changed)."""
        args = self.retry_args(job, error, delay)
        return self.outcome(fcall(self.client, self.f_retry, self.queue_keys, args))

    def extend(self, job: Job, *, visibility: float | None = None) -> bool:
        """Renew the lease: its deadline becomes ``visibility`` seconds from now.
        False when the lease was lost."""
        args = self.extend_args(job, visibility)
        return bool(fcall(self.client, self.f_extend, self.queue_keys, args))

    def release(self, job: Job) -> bool:
        """Hand a claimed job back to the head of the queue without counting the
        attempt; this lease can no longer ack it. False when it was lost already."""
        return bool(fcall(self.client, self.f_release, self.queue_keys, self.own(job)))

    def requeue_expired(self, limit: int = 1000) -> tuple[int, int]:
        """Take back leases past their deadline; (requeued, dead-lettered)."""
        claimed = self._claim(0, None, limit)
        return claimed.requeued, claimed.dead_lettered

    def cancel(self, job_id: str, *, org_id: str) -> bool:
        """Drop a job that is not running; False when ``org_id`` has no such job or it runs."""
        self.member(org_id, job_id)
        reply = fcall(self.client, self.f_cancel, self.queue_keys, [org_id, job_id])
        return int(reply) == 1

    def redrive(self, job_id: str, *, org_id: str) -> bool:
        """Put a dead-lettered job of ``org_id`` back on the ready list."""
        self.member(org_id, job_id)
        return bool(fcall(self.client, self.f_redrive, self.queue_keys, [org_id, job_id]))

    def get(self, job_id: str, *, org_id: str) -> JobInfo | None:
        """A job of ``org_id``, or None (another org's job with this id is another job)."""
        member = self.member(org_id, job_id)
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(self.job_type, org_id, job_id))
        pipe.zscore(self.queue_keys[2], member)
        pipe.zscore(self.queue_keys[3], member)
        try:
            raw, running, delayed = pipe.execute()
        except RedisError as exc:
            raise translate(exc) from exc
        return self.info(job_id, org_id, raw, running, delayed)

    def dead_letters(self, *, org_id: str, limit: int = 100) -> list[JobInfo]:
        """Dead-lettered jobs of ``org_id`` (oldest first), among the first ``limit``."""
        start = f"{check_id(org_id, 'org_id')}:"
        redis: Any = self.client
        try:
            members = [codec.text(m) for m in redis.lrange(self.queue_keys[4], 0, limit - 1)]
        except RedisError as exc:
            raise translate(exc) from exc
        found = []
        for member in members:
            if member.startswith(start):
                info = self.get(member[len(start):], org_id=org_id)
                if info is not None:
                    found.append(info)
        return found

    def stats(self) -> QueueStats:
        """Sizes and counters of the whole queue (every org)."""
        pipe: Any = self.client.pipeline(transaction=False)
        ready, processing, _claims, delayed, dead, stats, _wake = self.queue_keys
        pipe.llen(ready)
        pipe.llen(processing)
        pipe.zcard(delayed)
        pipe.llen(dead)
        pipe.hgetall(stats)
        try:
            return self.stats_from(pipe.execute())
        except RedisError as exc:
            raise translate(exc) from exc


# ------------------------------------------------------------------ workers

Handler = Callable[[Job], object]


class Worker:
    """Claims jobs one at a time and runs ``handler`` on each until stopped.

    A handler that returns acks the job; one that raises has it retried (or
    dead-lettered). While it runs, its lease is renewed every ``heartbeat``
    seconds (default: a third of the visibility timeout; 0: never). When the
    worker learns that it lost the lease, ``job.lease_lost`` turns True: the
    handler should stop, and the job is never acked by this worker.

    :meth:`stop`, the stop event, or SIGTERM/SIGINT (``handle_signals=True``)
    end the loop: the running job gets ``grace`` seconds to finish; past
    that it is released back to the head of the queue (its attempt not
    counted, ``job.lease_lost`` set) and the worker returns once the handler
    does. Idle, the worker blocks up to ``block_timeout`` seconds on the
    queue's wake-up list, so it also notices a stop within that time.
    """

    def __init__(
        self,
        queue: JobQueue,
        handler: Handler,
        *,
        heartbeat: float | None = None,
        grace: float = 30.0,
        block_timeout: float = 1.0,
        stop_event: Event | None = None,
    ) -> None:
        self.queue = queue
        self.handler = handler
        if heartbeat is None:
            self.heartbeat = queue.visibility / 3
        else:
            self.heartbeat = seconds_ms(heartbeat, "heartbeat", zero=True) / 1000
        self.grace = seconds_ms(grace, "grace", zero=True) / 1000
        self.block_timeout = seconds_ms(block_timeout, "block_timeout") / 1000
        self.stop_event = stop_event or Event()
        self.processed = 0
        self._current: Job | None = None
        self._stop_at: float | None = None
        self._closing = False
        self._keeper_wake = Event()

    def stop(self) -> None:
        """Stop after the running job (released if it needs more than ``grace`` seconds)."""
        if not self.stop_event.is_set():
            log.info("worker %s: stopping; the running job gets %.1fs to finish",
                     self.queue.job_type, self.grace)
        self.stop_event.set()
        if self._stop_at is None:
            self._stop_at = time.monotonic() + self.grace
        self._keeper_wake.set()

    def run(self, *, max_jobs: int | None = None, handle_signals: bool = False) -> int:
        """Work until stopped (or ``max_jobs`` handled); how many jobs were handled."""
        restore = install_signals(self.stop) if handle_signals else None
        self._closing = False
        keeper = spawn(self._keep_leases, f"platformdb lease keeper {self.queue.job_type}")
        try:
            self._loop(max_jobs)
        finally:
            self._closing = True
            self._keeper_wake.set()
            join(keeper)
            if restore is not None:
                restore()
        return self.processed

    def _loop(self, max_jobs: int | None) -> None:
        while not self.stop_event.is_set():
            if max_jobs is not None and self.processed >= max_jobs:
                return
            try:
                claimed = self.queue._claim(1, None, REAP_PER_CLAIM)
            except PlatformDBError as exc:
                log.warning("worker %s: claim failed: %s", self.queue.job_type, exc)
                wait_flag(self.stop_event, self.block_timeout)
                continue
            if not claimed.jobs:
                self._idle(claimed.wait_ms)
                continue
            for job in claimed.jobs:
                self._handle(job)

    def _idle(self, wait_ms: int) -> None:
        timeout = self.block_timeout if wait_ms < 0 else min(self.block_timeout, wait_ms / 1000)
        if timeout < MIN_BLOCK:
            return
        try:
            self.queue.wait_for_jobs(timeout)
        except PlatformDBError as exc:
            log.warning("worker %s: waiting for jobs failed: %s", self.queue.job_type, exc)
            wait_flag(self.stop_event, self.block_timeout)

    def _handle(self, job: Job) -> None:
        self._current = job
        try:
            self.handler(job)
        except Exception as exc:
            self._current = None  # before the retry: the heartbeat must not renew it meanwhile
            self._failed(job, exc)
        else:
            self._current = None
            self._finished(job)
        finally:
            self._current = None
        self.processed += 1

    def _finished(self, job: Job) -> None:
        if not job.lease_lost:
            try:
                if self.queue.ack(job):
                    return
            except PlatformDBError as exc:
                log.warning("job %s/%s: ack failed: %s", job.job_type, job.id, exc)
                return
            job.lease.lost = True
        log.warning("job %s/%s finished after its lease was lost; not acked",
                    job.job_type, job.id)

    def _failed(self, job: Job, exc: Exception) -> None:
        outcome: RetryOutcome = "lost"
        if not job.lease_lost:
            try:
                outcome = self.queue.retry(job, f"{type(exc).__name__}: {exc}")
            except PlatformDBError as err:
                log.warning("job %s/%s: retry failed: %s", job.job_type, job.id, err)
                return
        if outcome == "lost":
            job.lease.lost = True
            log.warning("job %s/%s failed after its lease was lost; not retried: %s",
                        job.job_type, job.id, exc)
        else:
            log.info("job %s/%s failed (%s): %s", job.job_type, job.id, outcome, exc)

    # -- the lease keeper: heartbeats and the shutdown grace period -------

    def _keep_leases(self) -> None:
        while not self._closing:
            self._keeper_wake.clear()
            job = self._current
            if job is not None and not job.lease_lost:
                if self._stop_at is None and self.stop_event.is_set():
                    self._stop_at = time.monotonic() + self.grace
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    self._release(job)
                    continue
                if self.heartbeat and time.monotonic() - job.lease.renewed_at >= self.heartbeat:
                    self._renew(job)
                    continue
            wait_flag(self._keeper_wake, self._keeper_sleep(job))

    def _keeper_sleep(self, job: Job | None) -> float:
        if job is None or job.lease_lost:
            return self.heartbeat or self.block_timeout
        now = time.monotonic()
        due = [job.lease.renewed_at + self.heartbeat] if self.heartbeat else []
        if self._stop_at is not None:
            due.append(self._stop_at)
        return max(0.001, min(due) - now) if due else self.block_timeout

    def _renew(self, job: Job) -> None:
        try:
            renewed = self.queue.extend(job)
        except PlatformDBError as exc:
            log.warning("job %s/%s: lease renewal failed: %s", job.job_type, job.id, exc)
            wait_flag(self._keeper_wake, max(0.001, self.heartbeat / 2))
            return
        if renewed:
            job.lease.renewed_at = time.monotonic()
        elif self._current is job:
            job.lease.lost = True
            log.warning("job %s/%s lost its lease (it expired or was taken back); the handler "
                        "is told and its result will not be acked", job.job_type, job.id)

    def _release(self, job: Job) -> None:
        try:
            released = self.queue.release(job)
        except PlatformDBError as exc:
            log.warning("job %s/%s: release failed: %s", job.job_type, job.id, exc)
            released = False
        job.lease.lost = True
        if released:
            log.warning("job %s/%s did not finish within the %.1fs grace period; released "
                        "back to the queue", job.job_type, job.id, self.grace)
        else:
            log.warning("job %s/%s did not finish within the %.1fs grace period and its lease "
                        "was lost", job.job_type, job.id, self.grace)

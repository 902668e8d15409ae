"""Reliable job queues: ``queue:{job_type}`` and its companions.

A job is enqueued (now or after a delay), claimed by a worker into the
processing list with a visibility deadline, then acked, retried with
exponential backoff, or dead-lettered after ``max_attempts``. A worker that
dies mid-job loses nothing: its claim expires and the next claim call puts
the job back (or dead-letters it). Each claim carries a token (the attempt
number); ack and retry need the current token, so a job is never acked
twice, even when a slow worker finishes after its claim was handed on.

Every job belongs to an org; reading, cancelling or redriving a job needs
that org's id, and another org's job looks exactly like a missing one.

Keys (all with the ``{job_type}`` hash tag): ``queue:{t}`` (ready list),
``queue:{t}:processing``, ``queue:{t}:claims``, ``queue:{t}:delayed``,
``queue:{t}:dead``, ``queue:{t}:stats``, ``queue:{t}:job:<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Literal

from platformdb.errors import PlatformDBError, ValidationError
from platformdb.redis import codec
from platformdb.redis.keys import KeySpace, check_id, check_token
from platformdb.redis.scripts import AsyncClient, SyncClient, registry

log = logging.getLogger(__name__)

MAX_SECONDS = 30 * 24 * 3600.0
RetryOutcome = Literal["retried", "dead", "lost"]
JobStatus = Literal["ready", "delayed", "running", "dead"]


@dataclass(frozen=True)
class Job:
    """A claimed job. ``attempt`` (1 on the first run) is also the claim token."""

    id: str
    job_type: str
    org_id: str
    payload: Any
    attempt: int
    max_attempts: int
    enqueued_at: datetime


@dataclass(frozen=True)
class JobInfo:
    """A job as stored, for inspection (dead letters, support tooling)."""

    id: str
    org_id: str
    payload: Any
    status: JobStatus
    attempts: int
    max_attempts: int
    enqueued_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class QueueStats:
    ready: int
    processing: int
    delayed: int
    dead: int
    counters: dict[str, int] = field(default_factory=dict)


def _ms(seconds: float, what: str, *, zero: bool = False) -> int:
    low = 0.0 if zero else 0.001
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not low <= seconds <= MAX_SECONDS
    ):
        raise ValidationError(f"{what} must be {low}..{MAX_SECONDS:.0f} seconds, got {seconds!r}")
    return round(seconds * 1000) if zero else max(1, round(seconds * 1000))


def _attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValidationError(f"max_attempts must be an integer in 1..1000, got {value!r}")
    return value


def _when(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(codec.text(ms)) / 1000, tz=UTC)


class _QueueBase:
    def __init__(
        self,
        job_type: str,
        *,
        visibility_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        prefix: str = "",
    ) -> None:
        self.job_type = check_id(job_type, "job_type")
        self.keys = KeySpace(prefix)
        self.queue_keys = list(self.keys.queue(job_type))
        self.visibility_ms = _ms(visibility_timeout, "visibility_timeout")
        self.max_attempts = _attempts(max_attempts)
        self.backoff_ms = _ms(backoff, "backoff", zero=True)
        self.max_backoff_ms = _ms(max_backoff, "max_backoff", zero=True)

    def _enqueue_args(
        self,
        payload: Any,
        org_id: str,
        delay: float,
        job_id: str | None,
        max_attempts: int | None,
    ) -> list[Any]:
        jid = uuid.uuid4().hex if job_id is None else check_token(job_id, "job_id")
        check_id(org_id, "org_id")
        body = codec.dumps(payload, "job payload")
        attempts = self.max_attempts if max_attempts is None else _attempts(max_attempts)
        return [jid, org_id, body, attempts, _ms(delay, "delay", zero=True)]

    def _claim_args(self, count: int, visibility: float | None, reap: int) -> list[Any]:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
            raise ValidationError(f"claim count must be an integer in 0..1000, got {count!r}")
        vis = self.visibility_ms if visibility is None else _ms(visibility, "visibility")
        return [count, vis, self.backoff_ms, self.max_backoff_ms, reap]

    def _jobs(self, reply: Sequence[Any]) -> list[Job]:
        jobs = []
        for i in range(2, len(reply), 6):
            jid, token, org_id, payload, max_attempts, enqueued = reply[i : i + 6]
            jobs.append(
                Job(
                    id=codec.text(jid),
                    job_type=self.job_type,
                    org_id=codec.text(org_id),
                    payload=codec.loads(payload),
                    attempt=int(token),
                    max_attempts=int(max_attempts),
                    enqueued_at=_when(enqueued),
                )
            )
        return jobs

    def _own(self, job: Job) -> Job:
        if not isinstance(job, Job) or job.job_type != self.job_type:
            raise ValidationError(f"not a claimed job of queue {self.job_type!r}: {job!r}")
        return job

    def _retry_args(self, job: Job, error: str, delay: float | None) -> list[Any]:
        explicit = -1 if delay is None else _ms(delay, "retry delay", zero=True)
        text = str(error)[:4096]
        return [job.id, job.attempt, text, self.backoff_ms, self.max_backoff_ms, explicit]

    @staticmethod
    def _outcome(reply: Sequence[Any]) -> RetryOutcome:
        state = int(reply[0])
        if state == 1:
            return "retried"
        return "dead" if state == 2 else "lost"

    def _info(
        self, job_id: str, org_id: str, raw: Mapping[Any, Any], running: Any, delayed: Any
    ) -> JobInfo | None:
        fields = {codec.text(k): codec.text(v) for k, v in raw.items()}
        if fields.get("org_id") != org_id:
            return None
        status: JobStatus = "ready"
        if "dead_at" in fields:
            status = "dead"
        elif running is not None:
            status = "running"
        elif delayed is not None:
            status = "delayed"
        return JobInfo(
            id=job_id,
            org_id=org_id,
            payload=codec.loads(fields["payload"]),
            status=status,
            attempts=int(fields.get("attempts", "0")),
            max_attempts=int(fields.get("max_attempts", "1")),
            enqueued_at=_when(fields.get("enqueued_at", "0")),
            last_error=fields.get("last_error"),
        )

    def _stats(self, replies: Sequence[Any]) -> QueueStats:
        ready, processing, delayed, dead, counters = replies
        return QueueStats(
            ready=int(ready),
            processing=int(processing),
            delayed=int(delayed),
            dead=int(dead),
            counters={codec.text(k): int(v) for k, v in counters.items()},
        )


class JobQueue(_QueueBase):
    """One job type's queue (blocking client). Times are seconds.

    ``visibility_timeout``: how long a claim lasts before the job is given to
    another worker; ``backoff``/``max_backoff``: retry n waits
    ``backoff * 2**(n-1)`` seconds, at most ``max_backoff``.
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
        prefix: str = "",
    ) -> None:
        super().__init__(
            job_type,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            prefix=prefix,
        )
        self.client = client

    def _run(self, name: str, args: Sequence[Any]) -> Any:
        return registry().run(self.client, name, self.queue_keys, args)

    def enqueue(
        self,
        payload: Any,
        *,
        org_id: str,
        delay: float = 0.0,
        job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Add a job for ``org_id``; its id. An existing ``job_id`` is not added twice."""
        args = self._enqueue_args(payload, org_id, delay, job_id, max_attempts)
        self._run("queue_enqueue", args)
        return str(args[0])

    def enqueue_many(self, jobs: Iterable[tuple[str, Any]], *, delay: float = 0.0) -> list[str]:
        """Add many (org_id, payload) jobs in one pipeline; their ids."""
        calls = [self._enqueue_args(payload, org, delay, None, None) for org, payload in jobs]
        if calls:
            registry().run_many(
                self.client, "queue_enqueue", [(self.queue_keys, args) for args in calls]
            )
        return [str(args[0]) for args in calls]

    def claim(self, count: int = 1, *, visibility: float | None = None) -> list[Job]:
        """Claim up to ``count`` ready jobs (expired claims are requeued first)."""
        return self._jobs(self._run("queue_claim", self._claim_args(count, visibility, 100)))

    def ack(self, job: Job) -> bool:
        """Mark a claimed job done. False when the claim was lost (expired, acked)."""
        job = self._own(job)
        return bool(self._run("queue_ack", [job.id, job.attempt]))

    def retry(self, job: Job, error: str = "", *, delay: float | None = None) -> RetryOutcome:
        """Give a failed job back: "retried" later, "dead" when out of attempts, or
        "lost" when this worker no longer holds the claim."""
        reply = self._run("queue_retry", self._retry_args(self._own(job), error, delay))
        return self._outcome(reply)

    def extend(self, job: Job, *, visibility: float | None = None) -> bool:
        """Heartbeat: push the claim's deadline to ``visibility`` seconds from now."""
        job = self._own(job)
        vis = self.visibility_ms if visibility is None else _ms(visibility, "visibility")
        return bool(self._run("queue_extend", [job.id, job.attempt, vis]))

    def requeue_expired(self, limit: int = 1000) -> tuple[int, int]:
        """Take back claims past their deadline; (requeued, dead-lettered)."""
        reply = self._run("queue_claim", self._claim_args(0, None, limit))
        return int(reply[0]), int(reply[1])

    def cancel(self, job_id: str, *, org_id: str) -> bool:
        """Drop a job that is not running; False when ``org_id`` has no such job or it runs."""
        check_token(job_id, "job_id")
        return int(self._run("queue_cancel", [job_id, check_id(org_id, "org_id")])) == 1

    def redrive(self, job_id: str, *, org_id: str) -> bool:
        """Put a dead-lettered job of ``org_id`` back on the ready list."""
        check_token(job_id, "job_id")
        return bool(self._run("queue_redrive", [job_id, check_id(org_id, "org_id")]))

    def get(self, job_id: str, *, org_id: str) -> JobInfo | None:
        """A job of ``org_id``, or None (also for another org's job)."""
        check_id(org_id, "org_id")
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(self.job_type, job_id))
        pipe.zscore(self.queue_keys[2], job_id)
        pipe.zscore(self.queue_keys[3], job_id)
        raw, running, delayed = pipe.execute()
        return self._info(job_id, org_id, raw, running, delayed)

    def dead_letters(self, *, org_id: str, limit: int = 100) -> list[JobInfo]:
        """Dead-lettered jobs of ``org_id`` (oldest first), at most ``limit`` scanned."""
        ids = [codec.text(i) for i in self.client.lrange(self.queue_keys[4], 0, limit - 1)]
        found = [self.get(i, org_id=org_id) for i in ids]
        return [info for info in found if info is not None]

    def stats(self) -> QueueStats:
        pipe = self.client.pipeline(transaction=False)
        ready, processing, _claims, delayed, dead, stats = self.queue_keys
        pipe.llen(ready)
        pipe.llen(processing)
        pipe.zcard(delayed)
        pipe.llen(dead)
        pipe.hgetall(stats)
        return self._stats(pipe.execute())


class AsyncJobQueue(_QueueBase):
    """The asyncio counterpart of :class:`JobQueue`."""

    def __init__(
        self,
        client: AsyncClient,
        job_type: str,
        *,
        visibility_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        prefix: str = "",
    ) -> None:
        super().__init__(
            job_type,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            prefix=prefix,
        )
        self.client = client

    async def _run(self, name: str, args: Sequence[Any]) -> Any:
        return await registry().run_async(self.client, name, self.queue_keys, args)

    async def enqueue(
        self,
        payload: Any,
        *,
        org_id: str,
        delay: float = 0.0,
        job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> str:
        args = self._enqueue_args(payload, org_id, delay, job_id, max_attempts)
        await self._run("queue_enqueue", args)
        return str(args[0])

    async def enqueue_many(
        self, jobs: Iterable[tuple[str, Any]], *, delay: float = 0.0
    ) -> list[str]:
        calls = [self._enqueue_args(payload, org, delay, None, None) for org, payload in jobs]
        if calls:
            await registry().run_many_async(
                self.client, "queue_enqueue", [(self.queue_keys, args) for args in calls]
            )
        return [str(args[0]) for args in calls]

    async def claim(self, count: int = 1, *, visibility: float | None = None) -> list[Job]:
        reply = await self._run("queue_claim", self._claim_args(count, visibility, 100))
        return self._jobs(reply)

    async def ack(self, job: Job) -> bool:
        job = self._own(job)
        return bool(await self._run("queue_ack", [job.id, job.attempt]))

    async def retry(self, job: Job, error: str = "", *, delay: float | None = None) -> RetryOutcome:
        reply = await self._run("queue_retry", self._retry_args(self._own(job), error, delay))
        return self._outcome(reply)

    async def extend(self, job: Job, *, visibility: float | None = None) -> bool:
        job = self._own(job)
        vis = self.visibility_ms if visibility is None else _ms(visibility, "visibility")
        return bool(await self._run("queue_extend", [job.id, job.attempt, vis]))

    async def requeue_expired(self, limit: int = 1000) -> tuple[int, int]:
        reply = await self._run("queue_claim", self._claim_args(0, None, limit))
        return int(reply[0]), int(reply[1])

    async def cancel(self, job_id: str, *, org_id: str) -> bool:
        check_token(job_id, "job_id")
        return int(await self._run("queue_cancel", [job_id, check_id(org_id, "org_id")])) == 1

    async def redrive(self, job_id: str, *, org_id: str) -> bool:
        check_token(job_id, "job_id")
        return bool(await self._run("queue_redrive", [job_id, check_id(org_id, "org_id")]))

    async def get(self, job_id: str, *, org_id: str) -> JobInfo | None:
        check_id(org_id, "org_id")
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(self.job_type, job_id))
        pipe.zscore(self.queue_keys[2], job_id)
        pipe.zscore(self.queue_keys[3], job_id)
        raw, running, delayed = await pipe.execute()
        return self._info(job_id, org_id, raw, running, delayed)

    async def stats(self) -> QueueStats:
        pipe = self.client.pipeline(transaction=False)
        ready, processing, _claims, delayed, dead, stats = self.queue_keys
        pipe.llen(ready)
        pipe.llen(processing)
        pipe.zcard(delayed)
        pipe.llen(dead)
        pipe.hgetall(stats)
        return self._stats(await pipe.execute())


# ------------------------------------------------------------------ workers

Handler = Callable[[Job], object]
AsyncHandler = Callable[[Job], Awaitable[object]]
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Worker:
    """Claims jobs one at a time and runs ``handler`` on each until stopped.

    A handler that returns acks the job; one that raises has it retried (or
    dead-lettered). :meth:`stop`, the stop event, or SIGTERM/SIGINT (with
    ``handle_signals=True``) end the loop after the current job: a job is
    never abandoned half-way by a graceful shutdown.
    """

    def __init__(
        self,
        queue: JobQueue,
        handler: Handler,
        *,
        poll_interval: float = 1.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.poll_interval = _ms(poll_interval, "poll_interval") / 1000
        self.stop_event = stop_event or threading.Event()
        self.processed = 0

    def stop(self, *_: object) -> None:
        self.stop_event.set()

    def run(self, *, max_jobs: int | None = None, handle_signals: bool = False) -> int:
        """Work until stopped (or ``max_jobs`` handled); how many jobs were handled."""
        previous = self._install_signals() if handle_signals else {}
        try:
            self._loop(max_jobs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.processed

    def _install_signals(self) -> dict[int, Any]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("worker %s: signal %d, stopping after this job", self.queue.job_type, signum)
            self.stop()

        return {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}

    def _loop(self, max_jobs: int | None) -> None:
        idle = 0.01
        while not self.stop_event.is_set():
            if max_jobs is not None and self.processed >= max_jobs:
                return
            try:
                jobs = self.queue.claim()
            except PlatformDBError as exc:
                log.warning("worker %s: claim failed: %s", self.queue.job_type, exc)
                self.stop_event.wait(self.poll_interval)
                continue
            if not jobs:
                self.stop_event.wait(idle)
                idle = min(idle * 2, self.poll_interval)
                continue
            idle = 0.01
            for job in jobs:
                self._handle(job)

    def _handle(self, job: Job) -> None:
        try:
            self.handler(job)
        except Exception as exc:
            outcome = self.queue.retry(job, f"{type(exc).__name__}: {exc}")
            log.info("job %s/%s failed (%s): %s", job.job_type, job.id, outcome, exc)
        else:
            if not self.queue.ack(job):
                log.warning("job %s/%s finished after its claim expired", job.job_type, job.id)
        self.processed += 1


class AsyncWorker:
    """The asyncio counterpart of :class:`Worker` (``handler`` is a coroutine function)."""

    def __init__(
        self,
        queue: AsyncJobQueue,
        handler: AsyncHandler,
        *,
        poll_interval: float = 1.0,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.poll_interval = _ms(poll_interval, "poll_interval") / 1000
        self.stop_event = stop_event or asyncio.Event()
        self.processed = 0

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self, *, max_jobs: int | None = None, handle_signals: bool = False) -> int:
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in _STOP_SIGNALS:
                loop.add_signal_handler(signum, self.stop)
        try:
            await self._loop(max_jobs)
        finally:
            if handle_signals:
                for signum in _STOP_SIGNALS:
                    loop.remove_signal_handler(signum)
        return self.processed

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)

    async def _loop(self, max_jobs: int | None) -> None:
        idle = 0.01
        while not self.stop_event.is_set():
            if max_jobs is not None and self.processed >= max_jobs:
                return
            try:
                jobs = await self.queue.claim()
            except PlatformDBError as exc:
                log.warning("worker %s: claim failed: %s", self.queue.job_type, exc)
                await self._pause(self.poll_interval)
                continue
            if not jobs:
                await self._pause(idle)
                idle = min(idle * 2, self.poll_interval)
                continue
            idle = 0.01
            for job in jobs:
                try:
                    await self.handler(job)
                except Exception as exc:
                    await self.queue.retry(job, f"{type(exc).__name__}: {exc}")
                else:
                    await self.queue.ack(job)
                self.processed += 1

"""What both job queues and workers share: records, leases, arguments, replies.

See ``queue_async.py`` for the queue and the worker themselves.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis.functions import Function, library
from platformdb.redis.keys import KeySpace, check_id, check_token

MAX_SECONDS = 30 * 24 * 3600.0
REAP_PER_CLAIM = 100
RetryOutcome = Literal["retried", "dead", "lost"]
JobStatus = Literal["ready", "delayed", "running", "dead"]


class Lease:
    """A worker's hold on a claimed job.

    ``token`` is the lease number the claim returned (the fencing token: ack,
    retry, extend and release must present it); ``lost`` turns True when the
    worker learns that it no longer holds the job (its heartbeat was refused,
    or it released the job at shutdown): a handler that runs long should
    check ``job.lease_lost`` and stop, since its result will not be acked.
    """

    __slots__ = ("lost", "renewed_at", "token")

    def __init__(self, token: int) -> None:
        self.token = token
        self.lost = False
        self.renewed_at = time.monotonic()

    def __repr__(self) -> str:
        return f"Lease(token={self.token}, lost={self.lost})"


@dataclass(frozen=True)
class Job:
    """A claimed job. ``attempt`` counts runs (1 on the first); ``lease`` is this claim."""

    id: str
    job_type: str
    org_id: str
    payload: Any
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    lease: Lease = field(compare=False)

    @property
    def lease_lost(self) -> bool:
        """True once the worker knows another worker may run (or ran) this job."""
        return self.lease.lost


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
    """The whole queue (every org): list sizes and lifetime counters."""

    ready: int
    processing: int
    delayed: int
    dead: int
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    """What one claim call returned: the jobs, and how long an idle worker may block.

    ``unreadable``: jobs claimed whose payload is not JSON, with the reason; the
    queue dead-letters them before anyone sees them.
    """

    jobs: list[Job]
    requeued: int
    dead_lettered: int
    wait_ms: int  # -1: nothing delayed or leased, block as long as you like
    unreadable: list[tuple[Job, str]] = field(default_factory=list)


def seconds_ms(seconds: float, what: str, *, zero: bool = False) -> int:
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


def _payload(raw: str) -> Any:
    """A stored payload for inspection: its JSON, or the text itself when it is not JSON
    (such a job was dead-lettered at its claim, and support tooling must still show it)."""
    try:
        return codec.loads(raw)
    except (ValueError, RecursionError):
        return raw


def _unreadable(payload: str | bytes) -> str | None:
    """Why a payload cannot be text, if it cannot: bytes that are not UTF-8 (the client
    decodes them as lone surrogates rather than failing the whole claim)."""
    try:
        if isinstance(payload, bytes):
            payload.decode("utf-8")
        else:
            payload.encode("utf-8")
    except UnicodeError:
        return "payload is not UTF-8 text"
    return None


def _when(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(codec.text(ms)) / 1000, tz=UTC)


class QueueCore:
    """Settings, keys and arguments of one job type's queue (no I/O)."""

    def __init__(
        self,
        job_type: str,
        *,
        visibility_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        max_payload: int = codec.MAX_VALUE_BYTES,
        prefix: str = "",
    ) -> None:
        self.job_type = check_id(job_type, "job_type")
        self.keys = KeySpace(prefix)
        self.queue_keys = list(self.keys.queue(job_type))
        self.wake_key = self.queue_keys[6]
        self.visibility_ms = seconds_ms(visibility_timeout, "visibility_timeout")
        self.max_attempts = _attempts(max_attempts)
        self.backoff_ms = seconds_ms(backoff, "backoff", zero=True)
        self.max_backoff_ms = seconds_ms(max_backoff, "max_backoff", zero=True)
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise ValidationError(f"max_payload must be a positive integer, got {max_payload!r}")
        self.max_payload = max_payload
        lib = library()
        self.f_enqueue: Function = lib["queue_enqueue"]
        self.f_claim: Function = lib["queue_claim"]
        self.f_ack: Function = lib["queue_ack"]
        self.f_retry: Function = lib["queue_retry"]
        self.f_extend: Function = lib["queue_extend"]
        self.f_release: Function = lib["queue_release"]
        self.f_cancel: Function = lib["queue_cancel"]
        self.f_redrive: Function = lib["queue_redrive"]

    @property
    def visibility(self) -> float:
        """The lease length in seconds."""
        return self.visibility_ms / 1000

    def enqueue_args(
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
        if len(body) > self.max_payload and len(body.encode()) > self.max_payload:
            raise ValidationError(f"job payload is larger than this queue's max_payload "
                                  f"({self.max_payload} bytes) as JSON")
        attempts = self.max_attempts if max_attempts is None else _attempts(max_attempts)
        return [org_id, jid, body, attempts, seconds_ms(delay, "delay", zero=True)]

    def claim_args(self, count: int, visibility: float | None, reap: int) -> list[Any]:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
            raise ValidationError(f"claim count must be an integer in 0..1000, got {count!r}")
        vis = self.visibility_ms if visibility is None else seconds_ms(visibility, "visibility")
        return [count, vis, self.backoff_ms, self.max_backoff_ms, reap, self.max_payload]

    def claimed(self, reply: Sequence[Any]) -> Claimed:
        jobs, unreadable = [], []
        for i in range(3, len(reply), 7):
            org_id, jid, lease, attempt, payload, max_attempts, enqueued = reply[i : i + 7]
            data, reason = None, _unreadable(payload)
            if reason is None:
                try:
                    data = codec.loads(payload)
                except (ValueError, RecursionError) as exc:
                    reason = f"payload is not JSON: {str(exc)[:200]}"
            job = Job(
                id=codec.text(jid),
                job_type=self.job_type,
                org_id=codec.text(org_id),
                payload=data,
                attempt=int(attempt),
                max_attempts=int(max_attempts),
                enqueued_at=_when(enqueued),
                lease=Lease(int(lease)),
            )
            if reason is None:
                jobs.append(job)
            else:
                unreadable.append((job, reason))
        return Claimed(jobs, int(reply[0]), int(reply[1]), int(reply[2]), unreadable)

    def own(self, job: Job) -> list[Any]:
        """The (org_id, job id, lease token) of a job this queue claimed."""
        if not isinstance(job, Job) or job.job_type != self.job_type:
            raise ValidationError(f"not a claimed job of queue {self.job_type!r}: {job!r}")
        return [job.org_id, job.id, job.lease.token]

    def retry_args(
        self, job: Job, error: str, delay: float | None, *, dead: bool = False
    ) -> list[Any]:
        explicit = -1 if delay is None else seconds_ms(delay, "retry delay", zero=True)
        text = str(error)[:4096]
        return [*self.own(job), text, self.backoff_ms, self.max_backoff_ms, explicit,
                1 if dead else 0]

    def extend_args(self, job: Job, visibility: float | None) -> list[Any]:
        vis = self.visibility_ms if visibility is None else seconds_ms(visibility, "visibility")
        return [*self.own(job), vis]

    @staticmethod
    def outcome(reply: Sequence[Any]) -> RetryOutcome:
        state = int(reply[0])
        if state == 1:
            return "retried"
        return "dead" if state == 2 else "lost"

    def member(self, org_id: str, job_id: str) -> str:
        return f"{check_id(org_id, 'org_id')}:{check_token(job_id, 'job_id')}"

    def info(
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
            payload=_payload(fields.get("payload", "null")),
            status=status,
            attempts=int(fields.get("attempts", "0")),
            max_attempts=int(fields.get("max_attempts", "1")),
            enqueued_at=_when(fields.get("enqueued_at", "0")),
            last_error=fields.get("last_error"),
        )

    @staticmethod
    def stats_from(replies: Sequence[Any]) -> QueueStats:
        ready, processing, delayed, dead, counters = replies
        return QueueStats(
            ready=int(ready),
            processing=int(processing),
            delayed=int(delayed),
            dead=int(dead),
            counters={codec.text(k): int(v) for k, v in counters.items()},
        )

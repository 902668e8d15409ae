"""Lock-timeout retries, the way GitLab's ``with_lock_retries`` does them.

A migration that cannot get its lock within ``lock_timeout`` gives up its
place in the lock queue (so the queries queued behind it run), waits a
jittered, growing pause, and tries again, until its attempts or its time
budget run out. Only ``lock_not_available`` (55P03) and ``deadlock_detected``
(40P01) are retried: an attempt that failed on them changed nothing (its
transaction rolled back). ``statement_timeout`` is not retried: a statement
that is slow will be slow again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from platformdb.migrate.options import MigrateOptions

log = logging.getLogger("platformdb.migrate")

T = TypeVar("T")
RETRYABLE = {"55P03": "lock_not_available", "40P01": "deadlock_detected"}


def retryable(error: BaseException) -> psycopg.Error | None:
    """The PostgreSQL error behind ``error`` when it is a lock timeout or a deadlock."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, psycopg.Error) and current.sqlstate in RETRYABLE:
            return current
        current = getattr(current, "error", None) or current.__cause__
    return None


def pause(attempt: int, options: MigrateOptions, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, half jittered.

    Half of each pause is fixed and half random, so runners that failed together
    do not come back together, and no pause is ever near zero.
    """
    ceiling = min(options.backoff_cap_s, options.backoff_base_s * 2 ** (attempt - 1))
    jitter: float = (rng or random).uniform(0, ceiling / 2)  # spreads runners, not a secret
    return float(ceiling / 2 + jitter)


@dataclass
class Attempts:
    """What the retries of one unit of work did: for logs, errors and the benchmark."""

    what: str
    count: int = 0
    waited_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class RetriesExhausted(Exception):
    """Every attempt failed on a lock; carries the last error and the attempts made."""

    def __init__(self, attempts: Attempts, last: BaseException) -> None:
        super().__init__(str(last))
        self.attempts = attempts
        self.last = last


def with_lock_retries(work: Callable[[], T], options: MigrateOptions, what: str, *,
                      describe: Callable[[BaseException], str] | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      attempts: Attempts | None = None) -> T:
    """Run ``work`` until it succeeds, retrying lock timeouts and deadlocks.

    ``work`` must leave nothing behind when it fails (one transaction, or one
    autocommit statement). ``describe`` turns a failure into words for the log
    (who held the lock). Raises :class:`RetriesExhausted` when the attempts or
    the time budget run out; any other error is raised at once.
    """
    record = attempts or Attempts(what)
    started = time.monotonic()
    while True:
        record.count += 1
        try:
            return work()
        except Exception as exc:
            error = retryable(exc)
            if error is None:
                raise
            reason = RETRYABLE[str(error.sqlstate)]
            detail = describe(exc) if describe else ""
            record.errors.append(f"{reason}{': ' + detail if detail else ''}")
            delay = pause(record.count, options)
            spent = time.monotonic() - started
            if record.count >= options.attempts or spent + delay > options.retry_budget_s:
                raise RetriesExhausted(record, exc) from exc
            log.warning("%s: attempt %d of %d failed (%s%s); retrying in %.1f s", what,
                        record.count, options.attempts, reason,
                        f"; {detail}" if detail else "", delay)
            sleep(delay)
            record.waited_s += delay

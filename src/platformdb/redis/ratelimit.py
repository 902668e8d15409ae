# Generated from ratelimit_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
"""Sliding-window rate limits per org and DSP: ``ratelimit:{org_id}:{dsp}``.

Every DSP call of the platform passes :meth:`RateLimiter.allow` first.
The decision is one function call (``ratelimit_allow``) on a sorted set of
the requests admitted in the last window, timed by the server's clock:
exactly ``limit`` requests are admitted in any window of ``window`` seconds,
however many clients ask at once. ``allow_many`` decides a batch in one
pipelined round trip. The key carries the org: one org's traffic never
spends another's budget.

Limits are configured per DSP and per (org, DSP), with a default for the rest::

    limiter = RateLimiter(
        connect(url),
        default=Limit(100, 1.0),
        per_dsp={"dv360": Limit(50, 1.0)},
        per_org_dsp={("org_456", "dv360"): Limit(200, 1.0)},
    )
    decision = limiter.allow("org_456", "dv360")
    if not decision.allowed:
        ...  # back off for decision.retry_after seconds

Each limiter counts its decisions per DSP (allowed, denied) and adds them to
``platformdb:stats:ratelimit`` every ``stats_interval`` seconds, for the
exporter; :meth:`RateLimiter.flush_stats` adds them now (see ``_tally``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from platformdb.redis._fcall import fcall, fcall_many
from platformdb.redis._ratelimit import Decision, Limit, LimiterCore, decision
from platformdb.redis._tally import STATS_INTERVAL
from platformdb.redis.client import SyncClient
from platformdb.redis.functions import translate


class RateLimiter(LimiterCore):
    """Per-org, per-DSP sliding-window limiter."""

    def __init__(
        self,
        client: SyncClient,
        default: Limit,
        *,
        per_dsp: Mapping[str, Limit] | None = None,
        per_org_dsp: Mapping[tuple[str, str], Limit] | None = None,
        prefix: str = "",
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        super().__init__(default, per_dsp=per_dsp, per_org_dsp=per_org_dsp, prefix=prefix,
                         stats_interval=stats_interval)
        self.client = client

    def allow(self, org_id: str, dsp: str, *, limit: Limit | None = None) -> Decision:
        """Admit one request of ``org_id`` to ``dsp`` now, or say how long to wait."""
        keys, args, applied = self.call(org_id, dsp, limit)
        decided = decision(fcall(self.client, self.f_allow, keys, args), applied)
        if self.count(dsp, decided):
            self.flush_stats()
        return decided

    def allow_many(self, requests: Iterable[tuple[str, str]]) -> list[Decision]:
        """Decide many (org_id, dsp) requests in one pipeline, in order."""
        pairs = list(requests)
        calls = [self.call(org, dsp, None) for org, dsp in pairs]
        replies = fcall_many(self.client, self.f_allow, [(k, a) for k, a, _ in calls])
        decided = [decision(r, lim) for r, (_, _, lim) in zip(replies, calls, strict=True)]
        due = False
        for (_, dsp), one in zip(pairs, decided, strict=True):
            due = self.count(dsp, one)
        if due:
            self.flush_stats()
        return decided

    def flush_stats(self) -> None:
        """Add the decisions counted so far to ``platformdb:stats:ratelimit`` now.

        Never raises: counts that could not be added are kept for the next flush.
        """
        counts = self.tally.take()
        if not counts:
            return
        pipe: Any = self.client.pipeline(transaction=False)
        for field, amount in counts.items():
            pipe.hincrby(self.tally.key, field, amount)
        try:
            pipe.execute()
        except RedisError as exc:
            self.tally.put_back(counts, exc)

    def reset(self, org_id: str, dsp: str) -> None:
        """Forget the window of one org and DSP (support tooling, tests)."""
        redis: Any = self.client
        try:
            redis.delete(self.keys.ratelimit(org_id, dsp))
        except RedisError as exc:
            raise translate(exc) from exc

"""Sliding-window rate limits per org and DSP: ``ratelimit:{org_id}:{dsp}``.

Every DSP call of the platform passes :meth:`AsyncRateLimiter.allow` first.
The decision is one function call (``ratelimit_allow``) on a sorted set of
the requests admitted in the last window, timed by the server's clock:
exactly ``limit`` requests are admitted in any window of ``window`` seconds,
however many clients ask at once. ``allow_many`` decides a batch in one
pipelined round trip. The key carries the org: one org's traffic never
spends another's budget.

Limits are configured per DSP and per (org, DSP), with a default for the rest::

    limiter = AsyncRateLimiter(
        connect_async(url),
        default=Limit(100, 1.0),
        per_dsp={"dv360": Limit(50, 1.0)},
        per_org_dsp={("org_456", "dv360"): Limit(200, 1.0)},
    )
    decision = await limiter.allow("org_456", "dv360")
    if not decision.allowed:
        ...  # back off for decision.retry_after seconds
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from platformdb.redis._fcall_async import fcall, fcall_many
from platformdb.redis._ratelimit import Decision, Limit, LimiterCore, decision
from platformdb.redis.client import AsyncClient
from platformdb.redis.functions import translate


class AsyncRateLimiter(LimiterCore):
    """Per-org, per-DSP sliding-window limiter."""

    def __init__(
        self,
        client: AsyncClient,
        default: Limit,
        *,
        per_dsp: Mapping[str, Limit] | None = None,
        per_org_dsp: Mapping[tuple[str, str], Limit] | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(default, per_dsp=per_dsp, per_org_dsp=per_org_dsp, prefix=prefix)
        self.client = client

    async def allow(self, org_id: str, dsp: str, *, limit: Limit | None = None) -> Decision:
        """Admit one request of ``org_id`` to ``dsp`` now, or say how long to wait."""
        keys, args, applied = self.call(org_id, dsp, limit)
        return decision(await fcall(self.client, self.f_allow, keys, args), applied)

    async def allow_many(self, requests: Iterable[tuple[str, str]]) -> list[Decision]:
        """Decide many (org_id, dsp) requests in one pipeline, in order."""
        calls = [self.call(org, dsp, None) for org, dsp in requests]
        replies = await fcall_many(self.client, self.f_allow, [(k, a) for k, a, _ in calls])
        return [decision(r, lim) for r, (_, _, lim) in zip(replies, calls, strict=True)]

    async def reset(self, org_id: str, dsp: str) -> None:
        """Forget the window of one org and DSP (support tooling, tests)."""
        redis: Any = self.client
        try:
            await redis.delete(self.keys.ratelimit(org_id, dsp))
        except RedisError as exc:
            raise translate(exc) from exc

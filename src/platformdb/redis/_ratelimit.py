"""Sliding-window rate limits per org and DSP: ``ratelimit:{org_id}:{dsp}``.

Every DSP call of the platform passes :meth:`RateLimiter.allow` first. The
decision is one Lua call (``ratelimit_allow``) on a sorted set of the requests
admitted in the last window, timed by the server's clock: exactly ``limit``
requests are admitted in any window of ``window`` seconds, however many
clients ask at once. ``allow_many`` decides a batch in one pipelined round trip.

Limits are configured per DSP and per (org, DSP), with a default for the rest::

    limiter = RateLimiter(
        connect(url),
        default=Limit(100, 1.0),
        per_dsp={"dv360": Limit(50, 1.0)},
        per_org_dsp={("org_456", "dv360"): Limit(200, 1.0)},
    )
    decision = limiter.allow("org_456", "dv360")
    if not decision.allowed:
        time.sleep(decision.retry_after)
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from platformdb.errors import ValidationError
from platformdb.redis.keys import KeySpace, check_id
from platformdb.redis.scripts import AsyncClient, SyncClient, registry

MAX_REQUESTS = 1_000_000
MAX_WINDOW_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Limit:
    """``requests`` admitted per sliding window of ``window`` seconds."""

    requests: int
    window: float

    def __post_init__(self) -> None:
        if (
            isinstance(self.requests, bool)
            or not isinstance(self.requests, int)
            or not 1 <= self.requests <= MAX_REQUESTS
        ):
            raise ValidationError(
                f"rate limit must be an integer in 1..{MAX_REQUESTS}, got {self.requests!r}"
            )
        if (
            isinstance(self.window, bool)
            or not isinstance(self.window, int | float)
            or not math.isfinite(self.window)
            or not 0.001 <= self.window <= MAX_WINDOW_SECONDS
        ):
            raise ValidationError(
                f"rate limit window must be 0.001..{MAX_WINDOW_SECONDS} seconds, "
                f"got {self.window!r}"
            )

    @property
    def window_ms(self) -> int:
        return max(1, round(self.window * 1000))


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer: admit now, or retry after ``retry_after`` seconds."""

    allowed: bool
    remaining: int
    retry_after: float
    limit: int

    def __bool__(self) -> bool:
        return self.allowed


_Call = tuple[list[str], list[Any], Limit]
_NONCE_ROOT = secrets.token_hex(4)
_counter = itertools.count()


def _request_id() -> str:
    # Unique per call across processes; the script adds the server time too.
    return f"{_NONCE_ROOT}{os.getpid():x}.{next(_counter):x}"


def _decision(reply: Sequence[Any], limit: Limit) -> Decision:
    allowed, remaining, retry_ms = (int(x) for x in reply)
    return Decision(allowed == 1, remaining, retry_ms / 1000.0, limit.requests)


class _LimiterBase:
    def __init__(
        self,
        default: Limit,
        *,
        per_dsp: Mapping[str, Limit] | None = None,
        per_org_dsp: Mapping[tuple[str, str], Limit] | None = None,
        prefix: str = "",
    ) -> None:
        self.keys = KeySpace(prefix)
        self.default = _check_limit(default)
        self.per_dsp = {check_id(d, "dsp"): _check_limit(v) for d, v in (per_dsp or {}).items()}
        self.per_org_dsp = {
            (check_id(o, "org_id"), check_id(d, "dsp")): _check_limit(v)
            for (o, d), v in (per_org_dsp or {}).items()
        }
        self._script = registry()["ratelimit_allow"]

    def limit_for(self, org_id: str, dsp: str) -> Limit:
        """The limit that applies: the (org, DSP) one, else the DSP's, else the default."""
        return self.per_org_dsp.get((org_id, dsp)) or self.per_dsp.get(dsp) or self.default

    def _call(self, org_id: str, dsp: str, limit: Limit | None) -> _Call:
        key = self.keys.ratelimit(org_id, dsp)
        applied = self.limit_for(org_id, dsp) if limit is None else _check_limit(limit)
        return [key], [applied.requests, applied.window_ms, _request_id()], applied


def _check_limit(limit: object) -> Limit:
    if not isinstance(limit, Limit):
        raise ValidationError(f"expected a Limit(requests, window), got {limit!r}")
    return limit


class RateLimiter(_LimiterBase):
    """Per-org, per-DSP sliding-window limiter (blocking client)."""

    def __init__(
        self,
        client: SyncClient,
        default: Limit,
        *,
        per_dsp: Mapping[str, Limit] | None = None,
        per_org_dsp: Mapping[tuple[str, str], Limit] | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(default, per_dsp=per_dsp, per_org_dsp=per_org_dsp, prefix=prefix)
        self.client = client

    def allow(self, org_id: str, dsp: str, *, limit: Limit | None = None) -> Decision:
        """Admit one request of ``org_id`` to ``dsp`` now, or say how long to wait."""
        keys, args, applied = self._call(org_id, dsp, limit)
        reply = registry().run(self.client, "ratelimit_allow", keys, args)
        return _decision(reply, applied)

    def allow_many(self, requests: Iterable[tuple[str, str]]) -> list[Decision]:
        """Decide many (org_id, dsp) requests in one pipeline, in order."""
        calls = [self._call(org, dsp, None) for org, dsp in requests]
        if not calls:
            return []
        replies = registry().run_many(self.client, "ratelimit_allow", [(k, a) for k, a, _ in calls])
        return [_decision(r, lim) for r, (_, _, lim) in zip(replies, calls, strict=True)]

    def reset(self, org_id: str, dsp: str) -> None:
        """Forget the window of one org and DSP (support tooling, tests)."""
        self.client.delete(self.keys.ratelimit(org_id, dsp))


class AsyncRateLimiter(_LimiterBase):
    """The asyncio counterpart of :class:`RateLimiter`."""

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
        keys, args, applied = self._call(org_id, dsp, limit)
        reply = await registry().run_async(self.client, "ratelimit_allow", keys, args)
        return _decision(reply, applied)

    async def allow_many(self, requests: Iterable[tuple[str, str]]) -> list[Decision]:
        calls = [self._call(org, dsp, None) for org, dsp in requests]
        if not calls:
            return []
        replies = await registry().run_many_async(
            self.client, "ratelimit_allow", [(k, a) for k, a, _ in calls]
        )
        return [_decision(r, lim) for r, (_, _, lim) in zip(replies, calls, strict=True)]

    async def reset(self, org_id: str, dsp: str) -> None:
        await self.client.delete(self.keys.ratelimit(org_id, dsp))

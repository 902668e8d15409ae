"""What both rate limiters share: limits, decisions, keys and arguments (no I/O).

See ``ratelimit_async.py`` for the limiter itself.
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from platformdb.errors import ValidationError
from platformdb.redis._tally import STATS_INTERVAL, Tally
from platformdb.redis.functions import Function, library
from platformdb.redis.keys import KeySpace, check_id

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


def decision(reply: Sequence[Any], limit: Limit) -> Decision:
    allowed, remaining, retry_ms = (int(x) for x in reply)
    return Decision(allowed == 1, remaining, retry_ms / 1000.0, limit.requests)


class LimiterCore:
    def __init__(
        self,
        default: Limit,
        *,
        per_dsp: Mapping[str, Limit] | None = None,
        per_org_dsp: Mapping[tuple[str, str], Limit] | None = None,
        prefix: str = "",
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        self.keys = KeySpace(prefix)
        # decisions per DSP for the exporter, added to Redis in batches (see _tally)
        self.tally = Tally(self.keys.stats("ratelimit"), stats_interval)
        self._fields: dict[str, tuple[str, str]] = {}
        self.default = _check_limit(default)
        self.per_dsp = {check_id(d, "dsp"): _check_limit(v) for d, v in (per_dsp or {}).items()}
        self.per_org_dsp = {
            (check_id(o, "org_id"), check_id(d, "dsp")): _check_limit(v)
            for (o, d), v in (per_org_dsp or {}).items()
        }
        self.f_allow: Function = library()["ratelimit_allow"]

    def limit_for(self, org_id: str, dsp: str) -> Limit:
        """The limit that applies: the (org, DSP) one, else the DSP's, else the default."""
        return self.per_org_dsp.get((org_id, dsp)) or self.per_dsp.get(dsp) or self.default

    def count(self, dsp: str, decided: Decision) -> bool:
        """Count one decision for ``dsp``; True when the counters are due to be flushed."""
        fields = self._fields.get(dsp)
        if fields is None:  # built once per DSP: this runs on every decision
            fields = self._fields[dsp] = (f"{dsp}:denied", f"{dsp}:allowed")
        return self.tally.add(fields[decided.allowed])

    def call(self, org_id: str, dsp: str, limit: Limit | None) -> _Call:
        key = self.keys.ratelimit(org_id, dsp)
        applied = self.limit_for(org_id, dsp) if limit is None else _check_limit(limit)
        return [key], [applied.requests, applied.window_ms, _request_id()], applied


def _check_limit(limit: object) -> Limit:
    if not isinstance(limit, Limit):
        raise ValidationError(f"expected a Limit(requests, window), got {limit!r}")
    return limit

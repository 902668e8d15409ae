"""What both caches share: settings, scopes, keys and arguments (no I/O).

A cache is one namespace. By default it is **per org**: every call names the
org (``org_id=``) and the keys carry it in their hash tag,
``cache:{<org_id>:<namespace>}:<key>``, so one org can never read, overwrite,
list or invalidate another's entries, even under the same cache key. Data
that belongs to no tenant (a DSP catalogue, feature flags) goes in a cache
created with ``platform_wide=True``: ``cache:{<namespace>}:<key>``, and no
``org_id``. Each scope has companions under the same tag: recompute locks
``cachelock:``, tag sets ``cachetag:`` and the index ``cacheidx:`` (value key
-> expiry) that prefix deletion walks, so no service ever needs ``SCAN``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis._tally import STATS_INTERVAL, Tally
from platformdb.redis.functions import Function, library
from platformdb.redis.keys import KeySpace, check_free

FRESH, MISS, COMPUTE, BUSY = 1, 0, 2, 3
MAX_TTL = 365 * 24 * 3600.0
STEP = 1000  # index entries or tag members one delete_prefix / invalidate_tags call handles
WAIT_FIRST, WAIT_MAX = 0.005, 0.1


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _ms(seconds: float, what: str, *, zero: bool = False) -> int:
    low = 0.0 if zero else 0.001
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not low <= seconds <= MAX_TTL
    ):
        raise ValidationError(f"{what} must be {low}..{MAX_TTL:.0f} seconds, got {seconds!r}")
    return round(seconds * 1000) if zero else max(1, round(seconds * 1000))


class CacheCore:
    """Settings and key building of one cache namespace."""

    def __init__(
        self,
        namespace: str,
        *,
        ttl: float = 300.0,
        stale_ttl: float = 0.0,
        lock_ttl: float = 10.0,
        platform_wide: bool = False,
        prefix: str = "",
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        self.keys = KeySpace(prefix)
        self.namespace = namespace
        self.platform_wide = bool(platform_wide)
        self.keys.cache_scope(None, namespace)  # validates the namespace now
        # lookups per namespace for the exporter, added to Redis in batches (see _tally)
        self.tally = Tally(self.keys.stats("cache"), stats_interval)
        self.ttl_ms = _ms(ttl, "cache ttl")
        self.stale_ms = _ms(stale_ttl, "cache stale_ttl", zero=True)
        self.lock_ms = _ms(lock_ttl, "cache lock_ttl")
        lib = library()
        self.f_get: Function = lib["cache_get"]
        self.f_get_or_lock: Function = lib["cache_get_or_lock"]
        self.f_set: Function = lib["cache_set"]
        self.f_unlock: Function = lib["cache_unlock"]
        self.f_delete: Function = lib["cache_delete"]
        self.f_invalidate: Function = lib["cache_invalidate_tags"]
        self.f_delete_prefix: Function = lib["cache_delete_prefix"]

    def count(self, result: str) -> bool:
        """Count one lookup (``hit``, ``stale`` or ``miss``); True when a flush is due."""
        return self.tally.add(f"{self.namespace}:{result}")

    def scope(self, org_id: str | None) -> str:
        """The hash tag of ``org_id``'s entries (of everyone's, platform-wide)."""
        if self.platform_wide:
            if org_id is not None:
                raise ValidationError(
                    f"cache {self.namespace!r} is platform-wide: it takes no org_id")
            return self.keys.cache_scope(None, self.namespace)
        if org_id is None:
            raise ValidationError(
                f"cache {self.namespace!r} is per org: pass org_id=... (or create it with "
                "platform_wide=True for data that belongs to no tenant)")
        return self.keys.cache_scope(org_id, self.namespace)

    def pair(self, scope: str, key: str) -> list[str]:
        return [self.keys.cache(scope, key), self.keys.cache_lock(scope, key)]

    def set_call(
        self, scope: str, key: str, value: Any, ttl: float | None, tags: Iterable[str],
        token: str,
    ) -> tuple[list[str], list[Any]]:
        ttl_ms = self.ttl_ms if ttl is None else _ms(ttl, "cache ttl")
        keys = [*self.pair(scope, key), self.keys.cache_index(scope), *self.tag_keys(scope, tags)]
        return keys, [codec.dumps(value, f"cache value for {key!r}"), ttl_ms, self.stale_ms, token]

    def lock_args(self, token: str) -> list[Any]:
        return [self.stale_ms, token, self.lock_ms]

    @staticmethod
    def reply(reply: Sequence[Any]) -> tuple[int, Any]:
        state = int(reply[0])
        return state, (codec.loads(reply[1]) if len(reply) > 1 else MISSING)

    def tag_keys(self, scope: str, tags: Iterable[str]) -> list[str]:
        if isinstance(tags, str):
            raise ValidationError("tags must be a list of strings, not one string")
        return [self.keys.cache_tag(scope, tag) for tag in dict.fromkeys(tags)]

    def prefix_arg(self, scope: str, key_prefix: str) -> str:
        if key_prefix:
            check_free(key_prefix, "cache key prefix")
        return self.keys.cache_base(scope) + key_prefix

    def wait_budget(self, wait: float | None) -> float:
        return self.lock_ms / 1000 + 1.0 if wait is None else wait

"""The general cache: ``cache:{<org_id>:<namespace>}:<key>`` strings holding JSON.

The spec's ``cache:{key}`` with the namespace as its first segment, scoped to
an org: ``cache:campaign:123`` of org 456 is ``cache:{org_456:campaign}:123``.
Per-org is the default; ``platform_wide=True`` makes a cache of data that
belongs to no tenant (``cache:{catalog}:dv360``), an explicit choice.

- :meth:`AsyncCache.set` with ``tags`` registers the key under each tag;
  :meth:`AsyncCache.invalidate_tags` deletes everything under a tag atomically.
- :meth:`AsyncCache.delete_prefix` deletes by key prefix through the scope's
  index (never ``KEYS`` or ``SCAN``).
- :meth:`AsyncCache.get_or_compute` is stampede-protected: when the value is
  missing or stale exactly one caller computes it; the others get the stale
  value if there is one (``stale_ttl`` > 0) or wait for the fresh one.

Each cache counts its lookups (``hit``: fresh; ``stale``: a stale value was
served; ``miss``: nothing usable, the caller got the default or a computed value)
and adds them to ``platformdb:stats:cache`` every ``stats_interval`` seconds, for
the exporter's hit ratio per namespace; :meth:`AsyncCache.flush_stats` adds them now.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from platformdb.redis._acompat import asleep
from platformdb.redis._cache import (
    BUSY,
    COMPUTE,
    FRESH,
    MISSING,
    STEP,
    WAIT_FIRST,
    WAIT_MAX,
    CacheCore,
)
from platformdb.redis._fcall_async import fcall
from platformdb.redis._tally import STATS_INTERVAL
from platformdb.redis.client import AsyncClient

T = TypeVar("T")


class AsyncCache(CacheCore):
    """One cache namespace. TTLs are seconds.

    ``stale_ttl`` keeps each value that much longer than ``ttl`` to be served
    stale while one caller recomputes it; ``lock_ttl`` bounds a recompute.
    Every method takes ``org_id=`` (required unless ``platform_wide``).
    """

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        *,
        ttl: float = 300.0,
        stale_ttl: float = 0.0,
        lock_ttl: float = 10.0,
        platform_wide: bool = False,
        prefix: str = "",
        stats_interval: float = STATS_INTERVAL,
    ) -> None:
        super().__init__(namespace, ttl=ttl, stale_ttl=stale_ttl, lock_ttl=lock_ttl,
                         platform_wide=platform_wide, prefix=prefix,
                         stats_interval=stats_interval)
        self.client = client

    async def get(
        self, key: str, default: Any = None, *, org_id: str | None = None,
        allow_stale: bool = False,
    ) -> Any:
        """The cached value, or ``default`` when missing (or stale, unless allowed)."""
        value_key = self.keys.cache(self.scope(org_id), key)
        state, value = self.reply(await fcall(self.client, self.f_get, [value_key],
                                              [self.stale_ms]))
        if value is MISSING or (state != FRESH and not allow_stale):
            await self._count("miss")
            return default
        await self._count("hit" if state == FRESH else "stale")
        return value

    async def _count(self, result: str) -> None:
        if self.count(result):
            await self.flush_stats()

    async def flush_stats(self) -> None:
        """Add the lookups counted so far to ``platformdb:stats:cache`` now.

        Never raises: counts that could not be added are kept for the next flush.
        """
        counts = self.tally.take()
        if not counts:
            return
        pipe: Any = self.client.pipeline(transaction=False)
        for field, amount in counts.items():
            pipe.hincrby(self.tally.key, field, amount)
        try:
            await pipe.execute()
        except RedisError as exc:
            self.tally.put_back(counts, exc)

    async def set(
        self, key: str, value: Any, *, org_id: str | None = None, ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Cache a JSON-serializable ``value`` under ``key`` for ``ttl`` seconds."""
        keys, args = self.set_call(self.scope(org_id), key, value, ttl, tags, "")
        await fcall(self.client, self.f_set, keys, args)

    async def delete(self, *keys: str, org_id: str | None = None) -> int:
        """Delete the given keys; how many existed."""
        if not keys:
            return 0
        scope = self.scope(org_id)
        names = [self.keys.cache_index(scope), *(self.keys.cache(scope, k) for k in keys)]
        return int(await fcall(self.client, self.f_delete, names, []))

    async def invalidate_tags(self, *tags: str, org_id: str | None = None) -> int:
        """Delete every value registered under any of ``tags``; how many were deleted."""
        scope = self.scope(org_id)
        tag_keys = self.tag_keys(scope, tags)
        if not tag_keys:
            return 0
        keys = [self.keys.cache_index(scope), *tag_keys]
        deleted = 0
        while True:  # bounded steps: at most STEP values per tag per call
            reply = await fcall(self.client, self.f_invalidate, keys,
                                [self.keys.cache_base(scope), STEP])
            deleted += int(reply[0])
            if int(reply[1]) == 0:
                return deleted

    async def delete_prefix(self, key_prefix: str = "", *, org_id: str | None = None) -> int:
        """Delete every key of this scope starting with ``key_prefix`` ("" = all)."""
        scope = self.scope(org_id)
        index, start = [self.keys.cache_index(scope)], self.prefix_arg(scope, key_prefix)
        deleted, cursor = 0, 0
        while cursor >= 0:  # bounded steps: at most STEP index entries per call
            reply = await fcall(self.client, self.f_delete_prefix, index, [start, cursor, STEP])
            cursor, deleted = int(reply[0]), deleted + int(reply[1])
        return deleted

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        org_id: str | None = None,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        wait: float | None = None,
    ) -> T | Any:
        """The cached value, computing and caching it when missing or stale.

        Of all concurrent callers exactly one runs ``compute``; the others
        return the stale value when there is one, or wait up to ``wait``
        seconds (default: the lock TTL plus one second) for the fresh one and
        then compute it themselves.
        """
        scope = self.scope(org_id)
        tags = list(tags)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self.wait_budget(wait)
        pause = WAIT_FIRST
        pair = self.pair(scope, key)
        first = True
        while True:
            reply = await fcall(self.client, self.f_get_or_lock, pair, self.lock_args(token))
            state, value = self.reply(reply)
            if state == FRESH or (state == BUSY and value is not MISSING):
                await self._count("hit" if first and state == FRESH else
                                  "stale" if state == BUSY else "miss")
                return value
            first = False
            if state == COMPUTE:
                await self._count("miss")
                return await self._compute(scope, key, compute, ttl, tags, token)
            if time.monotonic() >= deadline:
                await self._count("miss")
                return await self._compute(scope, key, compute, ttl, tags, "")
            await asleep(pause)
            pause = min(pause * 2, WAIT_MAX)

    async def _compute(
        self,
        scope: str,
        key: str,
        compute: Callable[[], Awaitable[T]],
        ttl: float | None,
        tags: list[str],
        token: str,
    ) -> T:
        try:
            value = await compute()
            keys, args = self.set_call(scope, key, value, ttl, tags, token)
        except BaseException:
            if token:
                await fcall(self.client, self.f_unlock, self.pair(scope, key)[1:], [token])
            raise
        await fcall(self.client, self.f_set, keys, args)
        return value

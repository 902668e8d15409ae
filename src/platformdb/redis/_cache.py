"""The general cache: ``cache:{namespace}:<key>`` strings holding JSON.

The spec's ``cache:{key}`` with its first segment as namespace and hash tag:
``cache:campaign:123`` is ``cache:{campaign}:123``. A namespace's tag sets
(``cachetag:{campaign}:<tag>``) and recompute locks
(``cachelock:{campaign}:<key>``) share that tag, so tagging, invalidation and
the stampede lock are single Lua calls, also on Redis Cluster.

- :meth:`Cache.set` with ``tags`` registers the key under each tag;
  :meth:`Cache.invalidate_tags` deletes everything under a tag atomically.
- :meth:`Cache.delete_prefix` deletes by key prefix with ``SCAN`` (never ``KEYS``).
- :meth:`Cache.get_or_compute` is stampede-protected: when the value is
  missing or stale exactly one caller computes it; the others get the stale
  value if there is one (``stale_ttl`` > 0) or wait for the fresh one.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis.keys import KeySpace, check_free
from platformdb.redis.scripts import AsyncClient, SyncClient, registry

T = TypeVar("T")

FRESH, MISS, COMPUTE, BUSY = 1, 0, 2, 3
MAX_TTL = 365 * 24 * 3600.0
_SCAN_BATCH = 500
_WAIT_FIRST, _WAIT_MAX = 0.005, 0.1


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


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class _CacheBase:
    def __init__(
        self,
        namespace: str,
        *,
        ttl: float = 300.0,
        stale_ttl: float = 0.0,
        lock_ttl: float = 10.0,
        prefix: str = "",
    ) -> None:
        self.keys = KeySpace(prefix)
        self.namespace = namespace
        self.base = self.keys.cache_base(namespace)
        self.ttl_ms = _ms(ttl, "cache ttl")
        self.stale_ms = _ms(stale_ttl, "cache stale_ttl", zero=True)
        self.lock_ms = _ms(lock_ttl, "cache lock_ttl")

    def _pair(self, key: str) -> list[str]:
        return [self.keys.cache(self.namespace, key), self.keys.cache_lock(self.namespace, key)]

    def _set_call(
        self, key: str, value: Any, ttl: float | None, tags: Iterable[str], token: str
    ) -> tuple[list[str], list[Any]]:
        if isinstance(tags, str):
            raise ValidationError("tags must be a list of strings, not one string")
        ttl_ms = self.ttl_ms if ttl is None else _ms(ttl, "cache ttl")
        tag_keys = [self.keys.cache_tag(self.namespace, tag) for tag in dict.fromkeys(tags)]
        keys = self._pair(key) + tag_keys
        return keys, [codec.dumps(value, f"cache value for {key!r}"), ttl_ms, self.stale_ms, token]

    def _get_args(self, token: str) -> list[Any]:
        return [self.stale_ms, token, self.lock_ms if token else 0]

    @staticmethod
    def _reply(reply: Sequence[Any]) -> tuple[int, Any]:
        state = int(reply[0])
        return state, (codec.loads(reply[1]) if len(reply) > 1 else MISSING)

    def _tag_call(self, tags: Iterable[str]) -> list[str]:
        if isinstance(tags, str):
            raise ValidationError("tags must be a list of strings, not one string")
        return [self.keys.cache_tag(self.namespace, tag) for tag in dict.fromkeys(tags)]

    def _match(self, key_prefix: str) -> str:
        if key_prefix:
            check_free(key_prefix, "cache key prefix")
        return _glob_escape(self.base + key_prefix) + "*"

    def _wait_budget(self, wait: float | None) -> float:
        return self.lock_ms / 1000 + 1.0 if wait is None else wait


class Cache(_CacheBase):
    """One cache namespace (blocking client). TTLs are seconds.

    ``stale_ttl`` keeps each value that much longer than ``ttl`` to be served
    stale while one caller recomputes it; ``lock_ttl`` bounds a recompute.
    """

    def __init__(
        self,
        client: SyncClient,
        namespace: str,
        *,
        ttl: float = 300.0,
        stale_ttl: float = 0.0,
        lock_ttl: float = 10.0,
        prefix: str = "",
    ) -> None:
        super().__init__(namespace, ttl=ttl, stale_ttl=stale_ttl, lock_ttl=lock_ttl, prefix=prefix)
        self.client = client

    def get(self, key: str, default: Any = None, *, allow_stale: bool = False) -> Any:
        """The cached value, or ``default`` when missing (or stale, unless allowed)."""
        reply = registry().run(self.client, "cache_get", self._pair(key), self._get_args(""))
        state, value = self._reply(reply)
        if value is MISSING or (state != FRESH and not allow_stale):
            return default
        return value

    def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Cache a JSON-serializable ``value`` under ``key`` for ``ttl`` seconds."""
        keys, args = self._set_call(key, value, ttl, tags, "")
        registry().run(self.client, "cache_set", keys, args)

    def delete(self, *keys: str) -> int:
        """Delete the given keys; how many existed."""
        if not keys:
            return 0
        return int(self.client.delete(*(self.keys.cache(self.namespace, k) for k in keys)))

    def invalidate_tags(self, *tags: str) -> int:
        """Delete every value registered under any of ``tags``; how many were deleted."""
        tag_keys = self._tag_call(tags)
        if not tag_keys:
            return 0
        return int(registry().run(self.client, "cache_invalidate_tags", tag_keys, [self.base]))

    def delete_prefix(self, key_prefix: str = "") -> int:
        """Delete every key of this namespace starting with ``key_prefix`` (SCAN, not KEYS)."""
        deleted = 0
        batch: list[str] = []
        for name in self.client.scan_iter(match=self._match(key_prefix), count=1000):
            batch.append(codec.text(name))
            if len(batch) >= _SCAN_BATCH:
                deleted += int(self.client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(self.client.unlink(*batch))
        return deleted

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], T],
        *,
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
        tags = list(tags)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self._wait_budget(wait)
        pause = _WAIT_FIRST
        pair = self._pair(key)
        while True:
            reply = registry().run(self.client, "cache_get", pair, self._get_args(token))
            state, value = self._reply(reply)
            if state == FRESH or (state == BUSY and value is not MISSING):
                return value
            if state == COMPUTE:
                return self._compute(key, compute, ttl, tags, token)
            if time.monotonic() >= deadline:
                return self._compute(key, compute, ttl, tags, "")
            time.sleep(pause)
            pause = min(pause * 2, _WAIT_MAX)

    def _compute(
        self, key: str, compute: Callable[[], T], ttl: float | None, tags: list[str], token: str
    ) -> T:
        try:
            value = compute()
            keys, args = self._set_call(key, value, ttl, tags, token)
        except BaseException:
            if token:
                registry().run(self.client, "cache_unlock", self._pair(key)[1:], [token])
            raise
        registry().run(self.client, "cache_set", keys, args)
        return value


class AsyncCache(_CacheBase):
    """The asyncio counterpart of :class:`Cache`."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        *,
        ttl: float = 300.0,
        stale_ttl: float = 0.0,
        lock_ttl: float = 10.0,
        prefix: str = "",
    ) -> None:
        super().__init__(namespace, ttl=ttl, stale_ttl=stale_ttl, lock_ttl=lock_ttl, prefix=prefix)
        self.client = client

    async def get(self, key: str, default: Any = None, *, allow_stale: bool = False) -> Any:
        reply = await registry().run_async(
            self.client, "cache_get", self._pair(key), self._get_args("")
        )
        state, value = self._reply(reply)
        if value is MISSING or (state != FRESH and not allow_stale):
            return default
        return value

    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        keys, args = self._set_call(key, value, ttl, tags, "")
        await registry().run_async(self.client, "cache_set", keys, args)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self.client.delete(*(self.keys.cache(self.namespace, k) for k in keys)))

    async def invalidate_tags(self, *tags: str) -> int:
        tag_keys = self._tag_call(tags)
        if not tag_keys:
            return 0
        reply = await registry().run_async(
            self.client, "cache_invalidate_tags", tag_keys, [self.base]
        )
        return int(reply)

    async def delete_prefix(self, key_prefix: str = "") -> int:
        deleted = 0
        batch: list[str] = []
        async for name in self.client.scan_iter(match=self._match(key_prefix), count=1000):
            batch.append(codec.text(name))
            if len(batch) >= _SCAN_BATCH:
                deleted += int(await self.client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(await self.client.unlink(*batch))
        return deleted

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        wait: float | None = None,
    ) -> T | Any:
        """Like :meth:`Cache.get_or_compute`, with an async ``compute``."""
        tags = list(tags)
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_budget(wait)
        pause = _WAIT_FIRST
        pair = self._pair(key)
        while True:
            reply = await registry().run_async(
                self.client, "cache_get", pair, self._get_args(token)
            )
            state, value = self._reply(reply)
            if state == FRESH or (state == BUSY and value is not MISSING):
                return value
            if state == COMPUTE:
                return await self._compute(key, compute, ttl, tags, token)
            if loop.time() >= deadline:
                return await self._compute(key, compute, ttl, tags, "")
            await asyncio.sleep(pause)
            pause = min(pause * 2, _WAIT_MAX)

    async def _compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        ttl: float | None,
        tags: list[str],
        token: str,
    ) -> T:
        try:
            value = await compute()
            keys, args = self._set_call(key, value, ttl, tags, token)
        except BaseException:
            if token:
                await registry().run_async(
                    self.client, "cache_unlock", self._pair(key)[1:], [token]
                )
            raise
        await registry().run_async(self.client, "cache_set", keys, args)
        return value

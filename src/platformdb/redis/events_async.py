"""Real-time events per org over pub/sub: channel ``events:{org_id}``.

An event is a JSON message ``{"id", "org_id", "type", "data", "published_at"}``.
A subscriber names one org and receives that org's events only: the channel
is built from a validated org id (no patterns, no ``PSUBSCRIBE``), and a
message whose body names another org is dropped. Pub/sub is fire-and-forget:
a subscriber that is not connected misses events (use a job queue for work
that must not be lost).

On Redis Cluster the channel is a shard channel (``SPUBLISH``/``SSUBSCRIBE``),
served by the node that owns the ``{org_id}`` slot instead of every node.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import PlatformDBError
from platformdb.redis._events import Event, decode, encode
from platformdb.redis.client import AsyncClient, is_cluster
from platformdb.redis.keys import KeySpace


class AsyncSubscription:
    """The events of one org, as they arrive. Use as a context manager
    (``async with bus.subscribe(org) as sub``), or call :meth:`start` first."""

    def __init__(self, client: AsyncClient, channel: str, org_id: str) -> None:
        self.org_id = org_id
        self.channel = channel
        self._sharded = is_cluster(client)
        redis: Any = client
        self._pubsub: Any = redis.pubsub()

    async def start(self) -> AsyncSubscription:
        """Subscribe; events published from now on are received."""
        try:
            if self._sharded:
                await self._pubsub.ssubscribe(self.channel)
            else:
                await self._pubsub.subscribe(self.channel)
        except (RedisError, AttributeError) as exc:
            raise PlatformDBError(f"cannot subscribe to {self.channel}: {exc}") from exc
        return self

    async def get(self, timeout: float = 1.0) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if self._sharded:
                message = await self._pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=left
                )
            else:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=left
                )
            event = decode(self.org_id, message)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return None

    async def events(self) -> AsyncIterator[Event]:
        """Every event, as it arrives, until the subscription is closed."""
        while True:
            event = await self.get(timeout=1.0)
            if event is not None:
                yield event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def close(self) -> None:
        await self._pubsub.aclose()

    async def __aenter__(self) -> AsyncSubscription:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncEventBus:
    """Publish and subscribe to per-org events."""

    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        self.client = client
        self.keys = KeySpace(prefix)

    async def publish(self, org_id: str, event_type: str, data: Any = None) -> Event:
        """Send an event to the subscribers of ``org_id``."""
        body, event = encode(org_id, event_type, data)
        channel = self.keys.events(org_id)
        redis: Any = self.client
        try:
            if is_cluster(self.client):
                await redis.spublish(channel, body)
            else:
                await redis.publish(channel, body)
        except RedisError as exc:
            raise PlatformDBError(f"cannot publish to {channel}: {exc}") from exc
        return event

    def subscribe(self, org_id: str) -> AsyncSubscription:
        """A subscription to the events of ``org_id`` (and no other org)."""
        return AsyncSubscription(self.client, self.keys.events(org_id), org_id)

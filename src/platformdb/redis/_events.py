"""Real-time events per org over pub/sub: channel ``events:{org_id}``.

An event is a JSON message ``{"id", "org_id", "type", "data", "published_at"}``.
A subscriber names one org and receives that org's events only: the channel
is built from a validated org id (no patterns, no ``PSUBSCRIBE``), and a
message whose body names another org is dropped. Pub/sub is fire-and-forget:
a subscriber that is not connected misses events (use a :class:`JobQueue`
for work that must not be lost).

On Redis Cluster the channel is a shard channel (``SPUBLISH``/``SSUBSCRIBE``),
served by the node that owns the ``{org_id}`` slot instead of every node.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import PlatformDBError, ValidationError
from platformdb.redis import codec
from platformdb.redis.client import is_cluster
from platformdb.redis.keys import KeySpace, check_id
from platformdb.redis.scripts import AsyncClient, SyncClient

_EVENT_TYPE_MAX = 128


@dataclass(frozen=True)
class Event:
    id: str
    org_id: str
    type: str
    data: Any
    published_at: datetime


def _message(org_id: str, event_type: str, data: Any) -> tuple[str, Event]:
    check_id(org_id, "org_id")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= _EVENT_TYPE_MAX:
        raise ValidationError(f"event type must be 1..{_EVENT_TYPE_MAX} characters")
    event = Event(uuid.uuid4().hex, org_id, event_type, data, datetime.now(UTC))
    body = codec.dumps(
        {
            "id": event.id,
            "org_id": org_id,
            "type": event_type,
            "data": data,
            "published_at": event.published_at.isoformat(),
        },
        "event data",
    )
    return body, event


def _event(org_id: str, message: dict[str, Any] | None) -> Event | None:
    """The event in a pub/sub message, or None (control message, other org, bad JSON)."""
    if not message or message.get("type") not in ("message", "smessage"):
        return None
    try:
        body = codec.loads(message["data"])
        if body.get("org_id") != org_id:
            return None
        return Event(
            id=str(body["id"]),
            org_id=org_id,
            type=str(body["type"]),
            data=body.get("data"),
            published_at=datetime.fromisoformat(body["published_at"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Subscription:
    """The events of one org, as they arrive. Use as a context manager."""

    def __init__(self, client: SyncClient, channel: str, org_id: str) -> None:
        self.org_id = org_id
        self.channel = channel
        self._sharded = is_cluster(client)
        self._pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            if self._sharded:
                self._pubsub.ssubscribe(channel)
            else:
                self._pubsub.subscribe(channel)
        except RedisError as exc:
            raise PlatformDBError(f"cannot subscribe to {channel}: {exc}") from exc

    def get(self, timeout: float = 1.0) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if self._sharded:
                message = self._pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=left
                )
            else:
                message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            event = _event(self.org_id, message)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get(timeout=1.0)
            if event is not None:
                yield event

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Publish and subscribe to per-org events (blocking client)."""

    def __init__(self, client: SyncClient, *, prefix: str = "") -> None:
        self.client = client
        self.keys = KeySpace(prefix)

    def publish(self, org_id: str, event_type: str, data: Any = None) -> Event:
        """Send an event to the subscribers of ``org_id``."""
        body, event = _message(org_id, event_type, data)
        channel = self.keys.events(org_id)
        try:
            if is_cluster(self.client):
                self.client.spublish(channel, body)
            else:
                self.client.publish(channel, body)
        except RedisError as exc:
            raise PlatformDBError(f"cannot publish to {channel}: {exc}") from exc
        return event

    def subscribe(self, org_id: str) -> Subscription:
        """A subscription to the events of ``org_id`` (and no other org)."""
        return Subscription(self.client, self.keys.events(org_id), org_id)


class AsyncSubscription:
    """The asyncio counterpart of :class:`Subscription`."""

    def __init__(self, client: AsyncClient, channel: str, org_id: str) -> None:
        self.org_id = org_id
        self.channel = channel
        self._sharded = is_cluster(client)
        self._pubsub: Any = client.pubsub()

    async def start(self) -> AsyncSubscription:
        try:
            if self._sharded:
                await self._pubsub.ssubscribe(self.channel)
            else:
                await self._pubsub.subscribe(self.channel)
        except (RedisError, AttributeError) as exc:
            raise PlatformDBError(f"cannot subscribe to {self.channel}: {exc}") from exc
        return self

    async def get(self, timeout: float = 1.0) -> Event | None:
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
            event = _event(self.org_id, message)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return None

    async def close(self) -> None:
        closer = getattr(self._pubsub, "aclose", None) or self._pubsub.close
        await closer()

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
    """The asyncio counterpart of :class:`EventBus`."""

    def __init__(self, client: AsyncClient, *, prefix: str = "") -> None:
        self.client = client
        self.keys = KeySpace(prefix)

    async def publish(self, org_id: str, event_type: str, data: Any = None) -> Event:
        body, event = _message(org_id, event_type, data)
        channel = self.keys.events(org_id)
        try:
            if is_cluster(self.client):
                await self.client.spublish(channel, body)
            else:
                await self.client.publish(channel, body)
        except RedisError as exc:
            raise PlatformDBError(f"cannot publish to {channel}: {exc}") from exc
        return event

    def subscribe(self, org_id: str) -> AsyncSubscription:
        """Use as ``async with bus.subscribe(org) as sub:``."""
        return AsyncSubscription(self.client, self.keys.events(org_id), org_id)

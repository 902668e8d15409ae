# Generated from events_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
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
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from platformdb.errors import PlatformDBError
from platformdb.redis._events import Event, decode, encode
from platformdb.redis.client import SyncClient, is_cluster
from platformdb.redis.keys import KeySpace


class Subscription:
    """The events of one org, as they arrive. Use as a context manager
    (``with bus.subscribe(org) as sub``), or call :meth:`start` first."""

    def __init__(self, client: SyncClient, channel: str, org_id: str) -> None:
        self.org_id = org_id
        self.channel = channel
        self._sharded = is_cluster(client)
        redis: Any = client
        self._pubsub: Any = redis.pubsub()

    def start(self) -> Subscription:
        """Subscribe; events published from now on are received."""
        try:
            if self._sharded:
                self._pubsub.ssubscribe(self.channel)
            else:
                self._pubsub.subscribe(self.channel)
        except (RedisError, AttributeError) as exc:
            raise PlatformDBError(f"cannot subscribe to {self.channel}: {exc}") from exc
        return self

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
                message = self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=left
                )
            event = decode(self.org_id, message)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return None

    def events(self) -> Iterator[Event]:
        """Every event, as it arrives, until the subscription is closed."""
        while True:
            event = self.get(timeout=1.0)
            if event is not None:
                yield event

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> Subscription:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Publish and subscribe to per-org events."""

    def __init__(self, client: SyncClient, *, prefix: str = "") -> None:
        self.client = client
        self.keys = KeySpace(prefix)

    def publish(self, org_id: str, event_type: str, data: Any = None) -> Event:
        """Send an event to the subscribers of ``org_id``."""
        body, event = encode(org_id, event_type, data)
        channel = self.keys.events(org_id)
        redis: Any = self.client
        try:
            if is_cluster(self.client):
                redis.spublish(channel, body)
            else:
                redis.publish(channel, body)
        except RedisError as exc:
            raise PlatformDBError(f"cannot publish to {channel}: {exc}") from exc
        return event

    def subscribe(self, org_id: str) -> Subscription:
        """A subscription to the events of ``org_id`` (and no other org)."""
        return Subscription(self.client, self.keys.events(org_id), org_id)

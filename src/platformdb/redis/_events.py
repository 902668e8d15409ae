"""What both event buses share: the Event record, encoding and decoding (no I/O).

Real-time events per org over pub/sub: channel ``events:{org_id}``.

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

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis.keys import check_id

_EVENT_TYPE_MAX = 128


@dataclass(frozen=True)
class Event:
    id: str
    org_id: str
    type: str
    data: Any
    published_at: datetime


def encode(org_id: str, event_type: str, data: Any) -> tuple[str, Event]:
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


def decode(org_id: str, message: dict[str, Any] | None) -> Event | None:
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

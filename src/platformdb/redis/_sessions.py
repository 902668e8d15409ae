"""What both session stores share: the Session record, validation, replies.

Keys: ``session:{<org_id>:<user_id>}`` (the user's index, the spec's
``session:{user_id}`` hash, scoped to the org) and
``session:{<org_id>:<user_id>}:<handle>`` (one session), where the handle is
the SHA-256 of the session id. The id is a bearer secret: it exists only in
the caller's hands (returned once by ``create``), never in Redis.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from platformdb.errors import ValidationError
from platformdb.redis import codec
from platformdb.redis.functions import Function, library
from platformdb.redis.keys import KeySpace, check_handle, check_token, session_handle

DEFAULT_IDLE_TTL = 3600.0
DEFAULT_ABSOLUTE_TTL = 24 * 3600.0
MAX_TTL = 365 * 24 * 3600.0
# the most live sessions of one user of one org (session_create evicts the oldest past
# it; the library holds the same number): revoke_all and sessions stay bounded
MAX_SESSIONS = 1000
REVOKE_CHUNK = 1000


@dataclass(frozen=True)
class Session:
    """One session as stored; times are UTC.

    ``session_id`` is the secret the caller holds (known to this object
    because the caller created or presented it); ``handle`` is its SHA-256,
    the only form Redis ever sees, safe to show and enough to revoke it.
    """

    session_id: str
    handle: str
    user_id: str
    org_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime | None
    data: dict[str, Any] = field(default_factory=dict)


def _ms(seconds: float | None, what: str, *, allow_none: bool = False) -> int:
    if seconds is None and allow_none:
        return 0
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0.001 <= seconds <= MAX_TTL
    ):
        raise ValidationError(f"{what} must be 0.001..{MAX_TTL:.0f} seconds, got {seconds!r}")
    return max(1, round(seconds * 1000))


def _when(ms: str | bytes | int | None) -> datetime:
    return datetime.fromtimestamp(int(codec.text(str(ms or "0"))) / 1000, tz=UTC)


def parse_session(session_id: str, handle: str, flat: Sequence[Any]) -> Session | None:
    """A function's flat (field, value, ...) reply as a Session; None when empty."""
    items = [codec.text(x) for x in flat]
    raw = dict(zip(items[::2], items[1::2], strict=True))
    if "user_id" not in raw:
        return None
    absolute = int(raw.get("absolute_expires_at", "0"))
    return Session(
        session_id=session_id,
        handle=handle,
        user_id=raw["user_id"],
        org_id=raw["org_id"],
        created_at=_when(raw["created_at"]),
        last_seen_at=_when(raw["last_seen_at"]),
        expires_at=_when(raw["expires_at"]),
        absolute_expires_at=_when(absolute) if absolute else None,
        data=codec.loads(raw.get("data", "{}")),
    )


class SessionCore:
    """Settings, keys and arguments of a session store (no I/O)."""

    def __init__(
        self,
        *,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        absolute_ttl: float | None = DEFAULT_ABSOLUTE_TTL,
        max_sessions: int | None = None,
        prefix: str = "",
    ) -> None:
        self.keys = KeySpace(prefix)
        self.idle_ms = _ms(idle_ttl, "idle_ttl")
        self.absolute_ms = _ms(absolute_ttl, "absolute_ttl", allow_none=True)
        if max_sessions is not None and (
            isinstance(max_sessions, bool) or not isinstance(max_sessions, int)
            or not 1 <= max_sessions <= MAX_SESSIONS
        ):
            raise ValidationError(f"max_sessions must be an integer in 1..{MAX_SESSIONS}, "
                                  f"got {max_sessions!r}")
        self.max_sessions = max_sessions or MAX_SESSIONS
        lib = library()
        self.f_create: Function = lib["session_create"]
        self.f_touch: Function = lib["session_touch"]
        self.f_get: Function = lib["session_get"]
        self.f_revoke: Function = lib["session_revoke"]
        self.f_revoke_all: Function = lib["session_revoke_all"]
        self.f_list: Function = lib["session_list"]

    def create_call(
        self,
        org_id: str,
        user_id: str,
        data: Mapping[str, Any] | None,
        session_id: str | None,
        idle_ttl: float | None,
        absolute_ttl: float | None,
    ) -> tuple[str, list[str], list[Any]]:
        sid = check_token(session_id, "session_id") if session_id else secrets.token_urlsafe(32)
        if data is not None and not isinstance(data, Mapping):
            raise ValidationError(f"session data must be a mapping, got {type(data).__name__}")
        payload = codec.dumps(dict(data or {}), "session data")
        idle = self.idle_ms if idle_ttl is None else _ms(idle_ttl, "idle_ttl")
        absolute = self.absolute_ms if absolute_ttl is None else _ms(absolute_ttl, "absolute_ttl")
        handle = session_handle(sid)
        keys = self.one(org_id, user_id, handle)
        args = [handle, user_id, org_id, payload, idle, absolute, self.max_sessions]
        return sid, keys, args

    @staticmethod
    def created(sid: str, args: list[Any], reply: Sequence[Any]) -> Session:
        handle, user_id, org_id, payload, _, absolute_ms, _ = args
        created, expires = int(reply[0]), int(reply[1])
        return Session(
            session_id=sid,
            handle=handle,
            user_id=user_id,
            org_id=org_id,
            created_at=_when(created),
            last_seen_at=_when(created),
            expires_at=_when(expires),
            absolute_expires_at=_when(created + absolute_ms) if absolute_ms else None,
            data=codec.loads(payload),
        )

    def one(self, org_id: str, user_id: str, handle: str) -> list[str]:
        """The index and session keys of one session."""
        index = self.keys.session_index(org_id, user_id)
        return [index, f"{index}:{check_handle(handle)}"]

    def index(self, org_id: str, user_id: str) -> list[str]:
        return [self.keys.session_index(org_id, user_id)]

    @staticmethod
    def handles(flat: Sequence[Any]) -> list[str]:
        return [codec.text(x) for x in flat[::2]]

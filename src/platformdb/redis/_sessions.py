"""User sessions: ``session:{user_id}`` and ``session:{user_id}:<session_id>``.

A session is a hash (``user_id``, ``org_id``, ``data``, times) that expires
after ``idle_ttl`` seconds without use and never outlives ``absolute_ttl``
from its creation. Reading it with :meth:`SessionStore.get` slides the idle
expiry (one Lua call). The spec's ``session:{user_id}`` hash is the user's
session index (session id -> expiry), which makes "log out everywhere"
(:meth:`SessionStore.revoke_all`) one atomic call that touches that user's
keys only. All of a user's keys share the ``{user_id}`` hash tag.
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
from platformdb.redis.keys import KeySpace, check_id, check_token
from platformdb.redis.scripts import AsyncClient, SyncClient, registry

DEFAULT_IDLE_TTL = 3600.0
DEFAULT_ABSOLUTE_TTL = 24 * 3600.0
MAX_TTL = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Session:
    """One session as stored; times are UTC."""

    session_id: str
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


def _when(ms: str | bytes | None) -> datetime:
    return datetime.fromtimestamp(int(codec.text(ms or "0")) / 1000, tz=UTC)


def _session(session_id: str, flat: Sequence[Any] | Mapping[Any, Any]) -> Session | None:
    if isinstance(flat, Mapping):
        raw = {codec.text(k): codec.text(v) for k, v in flat.items()}
    else:
        items = [codec.text(x) for x in flat]
        raw = dict(zip(items[::2], items[1::2], strict=True))
    if "user_id" not in raw:
        return None
    absolute = int(raw.get("absolute_expires_at", "0"))
    return Session(
        session_id=session_id,
        user_id=raw["user_id"],
        org_id=raw["org_id"],
        created_at=_when(raw["created_at"]),
        last_seen_at=_when(raw["last_seen_at"]),
        expires_at=_when(raw["expires_at"]),
        absolute_expires_at=_when(str(absolute)) if absolute else None,
        data=codec.loads(raw.get("data", "{}")),
    )


class _SessionBase:
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
            isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1
        ):
            raise ValidationError(f"max_sessions must be a positive integer, got {max_sessions!r}")
        self.max_sessions = max_sessions or 0

    def _create_call(
        self,
        user_id: str,
        org_id: str,
        data: Mapping[str, Any] | None,
        session_id: str | None,
        idle_ttl: float | None,
        absolute_ttl: float | None,
    ) -> tuple[list[str], list[Any]]:
        sid = check_token(session_id, "session_id") if session_id else secrets.token_urlsafe(32)
        check_id(org_id, "org_id")
        if data is not None and not isinstance(data, Mapping):
            raise ValidationError(f"session data must be a mapping, got {type(data).__name__}")
        payload = codec.dumps(dict(data or {}), "session data")
        idle = self.idle_ms if idle_ttl is None else _ms(idle_ttl, "idle_ttl")
        absolute = self.absolute_ms if absolute_ttl is None else _ms(absolute_ttl, "absolute_ttl")
        keys = [self.keys.session_index(user_id), self.keys.session(user_id, sid)]
        args = [sid, user_id, org_id, payload, idle, absolute, self.max_sessions]
        return keys, args

    @staticmethod
    def _created(args: list[Any], reply: Sequence[Any]) -> Session:
        sid, user_id, org_id, payload, _, absolute_ms, _ = args
        created, expires = int(reply[0]), int(reply[1])
        return Session(
            session_id=sid,
            user_id=user_id,
            org_id=org_id,
            created_at=_when(str(created)),
            last_seen_at=_when(str(created)),
            expires_at=_when(str(expires)),
            absolute_expires_at=_when(str(created + absolute_ms)) if absolute_ms else None,
            data=codec.loads(payload),
        )

    def _one(self, user_id: str, session_id: str) -> list[str]:
        return [self.keys.session_index(user_id), self.keys.session(user_id, session_id)]

    @staticmethod
    def _ids(flat: Sequence[Any]) -> list[str]:
        return [codec.text(x) for x in flat[::2]]


class SessionStore(_SessionBase):
    """Sessions with sliding and absolute expiry (blocking client).

    ``idle_ttl`` and ``absolute_ttl`` are seconds (``absolute_ttl=None``: no
    hard limit); ``max_sessions`` caps the live sessions of one user, evicting
    the ones closest to expiry.
    """

    def __init__(
        self,
        client: SyncClient,
        *,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        absolute_ttl: float | None = DEFAULT_ABSOLUTE_TTL,
        max_sessions: int | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(
            idle_ttl=idle_ttl, absolute_ttl=absolute_ttl, max_sessions=max_sessions, prefix=prefix
        )
        self.client = client

    def create(
        self,
        user_id: str,
        org_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> Session:
        """Open a session; its id is random (256 bits) unless given."""
        keys, args = self._create_call(user_id, org_id, data, session_id, idle_ttl, absolute_ttl)
        reply = registry().run(self.client, "session_create", keys, args)
        return self._created(args, reply)

    def get(self, user_id: str, session_id: str, *, touch: bool = True) -> Session | None:
        """The session, or None when it expired or was revoked.

        ``touch`` (the default) counts this read as use and slides the expiry.
        """
        keys = self._one(user_id, session_id)
        if touch:
            flat = registry().run(self.client, "session_touch", keys, [session_id])
            return _session(session_id, flat)
        return _session(session_id, self.client.hgetall(keys[1]))

    def revoke(self, user_id: str, session_id: str) -> bool:
        """End one session; False when it was already gone."""
        keys = self._one(user_id, session_id)
        return bool(registry().run(self.client, "session_revoke", keys, [session_id]))

    def revoke_all(self, user_id: str) -> int:
        """End every session of ``user_id`` (and no one else's); how many were live."""
        index = self.keys.session_index(user_id)
        return int(registry().run(self.client, "session_revoke_all", [index], []))

    def sessions(self, user_id: str) -> list[str]:
        """Ids of the user's live sessions."""
        index = self.keys.session_index(user_id)
        return self._ids(registry().run(self.client, "session_list", [index], []))


class AsyncSessionStore(_SessionBase):
    """The asyncio counterpart of :class:`SessionStore`."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        absolute_ttl: float | None = DEFAULT_ABSOLUTE_TTL,
        max_sessions: int | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(
            idle_ttl=idle_ttl, absolute_ttl=absolute_ttl, max_sessions=max_sessions, prefix=prefix
        )
        self.client = client

    async def create(
        self,
        user_id: str,
        org_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> Session:
        keys, args = self._create_call(user_id, org_id, data, session_id, idle_ttl, absolute_ttl)
        reply = await registry().run_async(self.client, "session_create", keys, args)
        return self._created(args, reply)

    async def get(self, user_id: str, session_id: str, *, touch: bool = True) -> Session | None:
        keys = self._one(user_id, session_id)
        if touch:
            flat = await registry().run_async(self.client, "session_touch", keys, [session_id])
            return _session(session_id, flat)
        return _session(session_id, await self.client.hgetall(keys[1]))

    async def revoke(self, user_id: str, session_id: str) -> bool:
        keys = self._one(user_id, session_id)
        return bool(await registry().run_async(self.client, "session_revoke", keys, [session_id]))

    async def revoke_all(self, user_id: str) -> int:
        index = self.keys.session_index(user_id)
        return int(await registry().run_async(self.client, "session_revoke_all", [index], []))

    async def sessions(self, user_id: str) -> list[str]:
        index = self.keys.session_index(user_id)
        return self._ids(await registry().run_async(self.client, "session_list", [index], []))

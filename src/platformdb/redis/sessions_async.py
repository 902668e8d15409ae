"""User sessions per org: ``session:{<org_id>:<user_id>}`` and one hash per session.

A session is a hash (``user_id``, ``org_id``, ``data``, times) that expires
after ``idle_ttl`` seconds without use and never outlives ``absolute_ttl``
from its creation. The session id is a bearer secret: :meth:`create` returns
it once; Redis only ever holds its SHA-256 (the *handle*), in key names too,
so a credential that can list keys learns nothing it could sign in with.

Every call names the org (``org_id=``): ids are unique only within an org,
and a session asked for under another org, or another user, is simply not
found. ``get`` slides the idle expiry (one function call); ``revoke_all``
is "log out everywhere" for one user of one org, and nobody else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from platformdb.redis._fcall_async import fcall
from platformdb.redis._sessions import (
    DEFAULT_ABSOLUTE_TTL,
    DEFAULT_IDLE_TTL,
    REVOKE_CHUNK,
    Session,
    SessionCore,
    parse_session,
)
from platformdb.redis.client import AsyncClient
from platformdb.redis.keys import session_handle


class AsyncSessionStore(SessionCore):
    """Sessions with sliding and absolute expiry, per org and user.

    ``idle_ttl`` and ``absolute_ttl`` are seconds (``absolute_ttl=None``: no
    hard limit); ``max_sessions`` caps the live sessions of one user, evicting
    the ones closest to expiry.
    """

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
        data: Mapping[str, Any] | None = None,
        *,
        org_id: str,
        session_id: str | None = None,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> Session:
        """Open a session of ``user_id`` in ``org_id``; its id is random (256 bits) unless
        given. The returned ``session_id`` is the only copy of the secret."""
        sid, keys, args = self.create_call(
            org_id, user_id, data, session_id, idle_ttl, absolute_ttl
        )
        reply = await fcall(self.client, self.f_create, keys, args)
        return self.created(sid, args, reply)

    async def get(
        self, user_id: str, session_id: str, *, org_id: str, touch: bool = True
    ) -> Session | None:
        """The session, or None when it expired, was revoked or is not this org's and user's.

        ``touch`` (the default) counts this read as use and slides the expiry;
        ``touch=False`` only reads (``FCALL_RO``: a replica may answer).
        """
        handle = session_handle(session_id)
        keys = self.one(org_id, user_id, handle)
        if touch:
            flat = await fcall(self.client, self.f_touch, keys, [handle, org_id, user_id])
        else:
            flat = await fcall(self.client, self.f_get, keys[1:], [org_id, user_id])
        return parse_session(session_id, handle, flat)

    async def revoke(self, user_id: str, session_id: str, *, org_id: str) -> bool:
        """End one session; False when it was already gone."""
        return await self.revoke_handle(user_id, session_handle(session_id), org_id=org_id)

    async def revoke_handle(self, user_id: str, handle: str, *, org_id: str) -> bool:
        """End one session named by its handle (as :meth:`sessions` lists them)."""
        keys = self.one(org_id, user_id, handle)
        return bool(await fcall(self.client, self.f_revoke, keys, [handle]))

    async def revoke_all(self, user_id: str, *, org_id: str) -> int:
        """End every session of ``user_id`` in ``org_id`` (and no one else's); how many.

        At most ``REVOKE_CHUNK`` per function call, repeated until none remains (a
        capped index takes one call)."""
        index = self.index(org_id, user_id)
        revoked = 0
        while True:
            reply = await fcall(self.client, self.f_revoke_all, index, [REVOKE_CHUNK])
            revoked += int(reply[0])
            if int(reply[1]) == 0:
                return revoked

    async def sessions(self, user_id: str, *, org_id: str) -> list[str]:
        """Handles of the user's live sessions in ``org_id`` (not the secret ids)."""
        flat = await fcall(self.client, self.f_list, self.index(org_id, user_id), [])
        return self.handles(flat)

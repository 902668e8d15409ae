# Generated from _fcall_async.py by tools/async_to_sync.py: do not edit.
# Change the source and run `python tools/async_to_sync.py`.
"""Calls into the ``platformdb`` functions library, through redis-py's own API.

``fcall`` sends ``FCALL`` (``FCALL_RO`` for a function flagged ``no-writes``,
which a replica may serve) with the library version this package needs as
the last argument; ``fcall_many`` sends many calls of one function in one
pipeline (one round trip per node). Errors become platformdb errors
(:func:`platformdb.redis.functions.translate`): bad input is a
``ValidationError``, a missing or older library ``FunctionsNotLoaded``.

A plain standalone blocking client sends on a connection its thread keeps
out of the client's pool (``_direct.py``: the regular path costs about 40%
of the rate limiter's throughput); asyncio clients always take redis-py's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from platformdb.redis import _direct
from platformdb.redis._acompat import direct_path
from platformdb.redis.client import Arg, SyncClient
from platformdb.redis.functions import Function, library, translate

Call = tuple[Sequence[str], Sequence[Arg]]


def _command(function: Function) -> str:
    return "FCALL_RO" if function.readonly else "FCALL"


def fcall(
    client: SyncClient, function: Function, keys: Sequence[str], args: Sequence[Arg]
) -> Any:
    """Call ``function`` once; its reply."""
    version = library().version
    try:
        direct = direct_path(client)
        if direct is not None:
            try:
                command = (_command(function), function.server_name, len(keys), *keys, *args,
                           version)
                return _direct.call(direct, command)
            except _direct.Fallback:
                pass
        redis: Any = client  # redis-py types each reply as "value or awaitable"
        if function.readonly:
            return redis.fcall_ro(function.server_name, len(keys), *keys, *args, version)
        return redis.fcall(function.server_name, len(keys), *keys, *args, version)
    except RedisError as exc:
        raise translate(exc) from exc


def fcall_many(client: SyncClient, function: Function, calls: Sequence[Call]) -> list[Any]:
    """Call ``function`` once per (keys, args) in one pipeline; the replies in order.

    The first call that failed raises, after every call was sent (calls are
    independent: those before and after it took effect).
    """
    if not calls:
        return []
    version = library().version
    try:
        replies = _pipeline(client, function, calls, version)
    except RedisError as exc:
        raise translate(exc) from exc
    for reply in replies:
        if isinstance(reply, RedisError):
            raise translate(reply) from reply
    return replies


def _pipeline(
    client: SyncClient, function: Function, calls: Sequence[Call], version: int
) -> list[Any]:
    direct = direct_path(client)
    if direct is not None:
        commands = [(_command(function), function.server_name, len(keys), *keys, *args, version)
                    for keys, args in calls]
        try:
            return _direct.pipeline(direct, commands)
        except _direct.Fallback:
            pass
    pipe: Any = client.pipeline(transaction=False)
    send = pipe.fcall_ro if function.readonly else pipe.fcall
    for keys, args in calls:
        send(function.server_name, len(keys), *keys, *args, version)
    return list(pipe.execute(raise_on_error=False))

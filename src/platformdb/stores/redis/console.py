"""Redis from a shell: one command (:func:`query`) and valkey-cli (:func:`redis_cli_command`).

valkey-cli (the embedded wheel's) or redis-cli is pointed at the configured URL
with the password in ``REDISCLI_AUTH``, never in the arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.exceptions import RedisError

from platformdb.binaries import redis_tool
from platformdb.errors import ConfigError, QueryFailed
from platformdb.redis import client as redis_client
from platformdb.types import ClientProgram, QueryResult


def query(url: str, statement: str) -> QueryResult:
    """Run one command line (``HGETALL key``) and return the server's reply as rows."""
    try:
        words = shlex.split(statement)
    except ValueError as exc:
        raise ConfigError(f"cannot split the Redis command: {exc}") from exc
    client: Any = redis_client.connect(url, socket_connect_timeout=5, socket_timeout=30)
    with contextlib.suppress(AttributeError):
        client.response_callbacks.clear()  # the server's reply as redis-cli shows it
    try:
        reply = client.execute_command(*words)
    except RedisError as exc:
        raise QueryFailed(str(exc)) from exc
    finally:
        client.close()
    return redis_result(reply)


def redis_result(reply: Any) -> QueryResult:
    """A Redis reply as rows: a map as (field, value), a list one value per row."""
    if isinstance(reply, dict):
        return QueryResult(["field", "value"], [(_text(k), _text(v)) for k, v in reply.items()])
    if isinstance(reply, list | tuple | set):
        return QueryResult(["value"], [(_text(item),) for item in reply])
    if reply is None:  # a missing key: said as redis-cli says it, never an empty string
        return QueryResult(status="(nil)")
    return QueryResult(["value"], [(_text(reply),)])


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, list | tuple):
        return json.dumps([_text(v) for v in value], default=str)
    if isinstance(value, dict):
        return json.dumps({str(_text(k)): _text(v) for k, v in value.items()}, default=str)
    return value


def redis_cli_command(url: str, extra: Sequence[str] = ()) -> ClientProgram:
    """valkey-cli (the embedded wheel's) or redis-cli pointed at ``url``; the password in
    ``REDISCLI_AUTH``, never in the arguments."""
    parts = urlsplit(url)
    scheme = parts.scheme
    args = [str(redis_tool("cli"))]
    if scheme == "unix":
        args += ["-s", parts.path]
    else:
        first = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
        host, _, port = first.rpartition(":") if ":" in first else (first, "", "6379")
        args += ["-h", host.strip("[]") or "127.0.0.1", "-p", port or "6379"]
    if scheme in ("rediss", "rediss+cluster"):
        args.append("--tls")
    if "cluster" in scheme:
        args.append("-c")
    database = parts.path.strip("/") if scheme != "unix" else ""
    if database and database != "0":
        args += ["-n", database]
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if parts.password is not None:
        if parts.username:
            args += ["--user", unquote(parts.username)]
        env["REDISCLI_AUTH"] = unquote(parts.password)
    elif parts.username:  # redis://PASSWORD@host: a lone userinfo word is the password
        env["REDISCLI_AUTH"] = unquote(parts.username)
    return ClientProgram([*args, *extra], env)

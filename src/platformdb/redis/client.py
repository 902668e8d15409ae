"""The one way in to Redis: a pooled client from a URL.

``redis://`` and ``rediss://`` (TLS) and ``unix://`` give a client over a
connection pool; ``redis+cluster://host:port[,host:port...]`` (or
``rediss+cluster://``) gives a Redis Cluster client that discovers the other
nodes from the seeds. redis-py parses replies with hiredis when it is
installed (``pip install hiredis``); :data:`HIREDIS_AVAILABLE` says whether it
is.

Clients decode replies to ``str``; the classes of this package also accept
clients that do not.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio.client import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from platformdb.errors import ConfigError, StoreUnavailable
from platformdb.redaction import redact as redact_url

SyncClient: TypeAlias = "Redis | RedisCluster"
AsyncClient: TypeAlias = "AsyncRedis | AsyncRedisCluster"
Arg: TypeAlias = "str | int | float | bytes"


def _hiredis_available() -> bool:
    try:
        from redis.utils import HIREDIS_AVAILABLE as available
    except ImportError:  # pragma: no cover - older redis-py
        return False
    return bool(available)


HIREDIS_AVAILABLE: bool = _hiredis_available()

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# Defaults a service wants: fail fast on a dead server instead of hanging,
# notice half-open connections, and keep the pool bounded.
# A reply that is not UTF-8 (a job payload written by something other than this
# package) decodes with its odd bytes as lone surrogates instead of failing the whole
# call: a worker's claim must be able to dead-letter such a job (``_queue.py``).
_DEFAULTS: dict[str, Any] = {
    "decode_responses": True,
    "encoding_errors": "surrogateescape",
    "socket_connect_timeout": 5.0,
    "socket_timeout": 10.0,
    "health_check_interval": 30,
}
_POOL_SIZE = 64


def _split(url: str) -> tuple[str, list[tuple[str, int]], dict[str, Any]]:
    """scheme, seed nodes and credentials of a cluster URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = port, "6379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ConfigError(f"bad node {item!r} in Redis URL; expected host:port")
        nodes.append((host, int(port)))
    creds: dict[str, Any] = {}
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if has_password:
            creds["password"] = unquote(password)
            if user:
                creds["username"] = unquote(user)
        else:
            creds["password"] = unquote(user)
    return scheme, nodes, creds


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in STANDALONE_SCHEMES + CLUSTER_SCHEMES:
        raise ConfigError(
            f"unsupported Redis URL scheme {scheme!r} in {redact(url)}; use redis://, rediss://, "
            "unix:// or redis+cluster://host:port"
        )
    return scheme


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return redact_url(url)


def connect(url: str, **options: Any) -> Redis | RedisCluster:
    """A pooled client for ``url``; ``options`` override the client defaults.

    Nothing is sent until the first command; call :func:`ping` to check.
    """
    scheme = _scheme(url)
    kwargs = {**_DEFAULTS, **options}
    if scheme in STANDALONE_SCHEMES:
        kwargs.setdefault("max_connections", _POOL_SIZE)
        return Redis.from_url(url, **kwargs)
    _, nodes, creds = _split(url)
    kwargs.pop("health_check_interval", None)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
        ssl=scheme == "rediss+cluster",
        **creds,
        **kwargs,
    )


def connect_async(url: str, **options: Any) -> AsyncRedis | AsyncRedisCluster:
    """The asyncio counterpart of :func:`connect` (create it inside the event loop)."""
    scheme = _scheme(url)
    kwargs = {**_DEFAULTS, **options}
    if scheme in STANDALONE_SCHEMES:
        kwargs.setdefault("max_connections", _POOL_SIZE)
        return AsyncRedis.from_url(url, **kwargs)
    _, nodes, creds = _split(url)
    kwargs.pop("health_check_interval", None)
    return AsyncRedisCluster(
        startup_nodes=[AsyncClusterNode(host, port) for host, port in nodes],
        ssl=scheme == "rediss+cluster",
        **creds,
        **kwargs,
    )


def ping(client: Redis | RedisCluster) -> None:
    """Round-trip to the server; :class:`StoreUnavailable` when it does not answer."""
    try:
        client.ping()
    except RedisError as exc:
        raise StoreUnavailable(f"Redis did not answer PING: {exc}", store="redis") from exc


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)

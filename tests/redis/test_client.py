"""Connection URLs, the server binaries, unreachable servers."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from redis.client import Redis
from redis.connection import SSLConnection, UnixDomainSocketConnection

from platformdb.binaries import redis_tool
from platformdb.errors import ConfigError, StoreUnavailable
from platformdb.redis import Limit, RateLimiter, connect, ping
from platformdb.redis.client import _split, redact


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_standalone_urls_give_pooled_clients() -> None:
    plain = connect("redis://127.0.0.1:6380/2")
    assert isinstance(plain, Redis)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6380, 2)
    assert plain.connection_pool.max_connections == 64
    tls = connect("rediss://127.0.0.1:6380/0")
    assert isinstance(tls, Redis)
    assert tls.connection_pool.connection_class is SSLConnection
    unix = connect("unix:///tmp/redis.sock")
    assert isinstance(unix, Redis)
    assert unix.connection_pool.connection_class is UnixDomainSocketConnection


def test_cluster_urls_name_seed_nodes_and_credentials() -> None:
    scheme, nodes, creds = _split("redis+cluster://svc:s%40cret@10.0.0.1:7000,10.0.0.2:7001")
    assert scheme == "redis+cluster"
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert creds == {"username": "svc", "password": "s@cret"}
    assert _split("rediss+cluster://h")[1] == [("h", 6379)]
    with pytest.raises(ConfigError):
        _split("redis+cluster://h:port")


@pytest.mark.parametrize("url", ["http://h:6379", "postgres://x", "h:6379", ""])
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        connect(url)


def test_redact_hides_the_password() -> None:
    assert redact("redis://svc:secret@h:1/0") == "redis://svc:***@h:1/0"
    assert "secret" not in redact("redis://:secret@h:1/0")
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_unreachable_server_is_store_unavailable() -> None:
    client = connect(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        ping(client)
    with pytest.raises(StoreUnavailable):
        RateLimiter(client, Limit(1, 1)).allow("org_1", "dv360")


def test_ping_a_live_server(redis_client: Redis) -> None:
    ping(redis_client)


def test_server_binaries_are_found() -> None:
    server = redis_tool("server")
    assert server.is_file() and os.access(server, os.X_OK)
    version = subprocess.run([str(server), "--version"], capture_output=True, text=True).stdout
    assert "v=" in version
    cli = redis_tool("cli")
    assert cli.is_file()
    with pytest.raises(ValueError, match="unknown Redis tool"):
        redis_tool("sentinel")

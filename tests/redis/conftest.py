"""Fixtures of the Redis tests: a key prefix per test, clients, scratch servers, a Cluster.

``redis_url`` comes from the root conftest (the embedded server, plus
``PLATFORMDB_TEST_REDIS_URL`` when set). The functions library is loaded
there once per session (``FUNCTION LOAD REPLACE`` is idempotent, so shared
servers do not mind). Every key a test touches starts with its own
``redis_prefix``, and the prefix's keys are deleted afterwards.

Tests that change server-wide state (the library, ACL users, whole
databases) use ``scratch``: a private server of each kind (the embedded
Valkey 8 and the machine's redis-server 7.0), flushed around each test.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.binaries import redis_tool
from platformdb.redis import connect, functions
from tests.redis.helpers import delete_prefix
from tests.redis.servers import server_binaries, start_server
from tests.redis.valkey_cluster import Cluster, start_cluster

SCRATCH_KINDS = sorted(server_binaries())


@pytest.fixture(scope="session")
def functions_url(redis_url: str) -> str:
    """``redis_url`` with this checkout's functions library loaded."""
    client = connect(redis_url)
    functions.load(client)
    client.close()
    return redis_url


@pytest.fixture
def redis_prefix(functions_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = connect(functions_url)
    assert isinstance(client, Redis)
    delete_prefix(client, prefix)
    client.close()


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[Redis]:
    """A client of the target server."""
    client = connect(redis_url)
    assert isinstance(client, Redis)
    yield client
    client.close()


@pytest.fixture(scope="session", params=SCRATCH_KINDS)
def scratch_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private standalone server of each kind, for the whole session."""
    root = Path(tempfile.mkdtemp(prefix="platformdb-scratch-"))
    server = start_server(server_binaries()[request.param], root)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def wipe(client: Redis) -> None:
    client.flushall()
    client.function_flush()
    for user in client.acl_users():
        if user != "default":
            client.acl_deluser(user)


@pytest.fixture
def scratch(scratch_url: str) -> Iterator[Redis]:
    """A client of a private server with no data, no functions and no extra ACL users."""
    client = connect(scratch_url)
    assert isinstance(client, Redis)
    wipe(client)
    yield client
    wipe(client)
    client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A real 3-master Redis Cluster on free loopback ports, torn down at the end."""
    root = Path(tempfile.mkdtemp(prefix="platformdb-cluster-"))
    cluster = start_cluster(root, redis_tool("server"), redis_tool("cli"))
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster_prefix() -> str:
    """A key prefix of one test on the (throwaway) cluster."""
    return f"c{uuid.uuid4().hex[:8]}:"

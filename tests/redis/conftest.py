"""Fixtures of the Redis tests: a key prefix per test, clients, a real Cluster.

``redis_url`` comes from the root conftest (the embedded server, plus
``PLATFORMDB_TEST_REDIS_URL`` when set). Every key a test touches starts with
its own ``redis_prefix``, so tests can share a server, and the prefix's keys
are deleted afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.redis import connect
from platformdb.redis.server_binary import redis_server_binary, redis_tool
from tests.redis.helpers import delete_prefix
from tests.redis.valkey_cluster import Cluster, start_cluster


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = connect(redis_url)
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


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A real 3-master Redis Cluster on free loopback ports, torn down at the end."""
    root = Path(tempfile.mkdtemp(prefix="platformdb-cluster-"))
    cluster = start_cluster(root, redis_server_binary(), redis_tool("cli"))
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster_prefix() -> str:
    """A key prefix of one test on the (throwaway) cluster."""
    return f"c{uuid.uuid4().hex[:8]}:"

"""The Redis fixtures of tests/redis/ (a key prefix per test, scratch servers, a Cluster)."""

from tests.redis.conftest import (  # noqa: F401 - fixtures
    cluster_prefix,
    functions_url,
    redis_client,
    redis_cluster,
    redis_prefix,
    scratch,
    scratch_url,
)

"""Redis for the platform's services: sessions, cache, rate limits, job queues, events.

Every structure is a small class over a pooled client from :func:`connect`,
with an asyncio twin; every multi-step operation is one Lua script from
``redis/scripts`` (atomic, Cluster-safe thanks to shared hash tags). See
``docs/REDIS.md``.

    from platformdb.redis import connect, RateLimiter, Limit

    limiter = RateLimiter(connect("redis://127.0.0.1:6379/0"), default=Limit(100, 1.0))
    if limiter.allow("org_456", "dv360"):
        ...
"""

from platformdb.redis.acl import acl_commands, apply_acl_users
from platformdb.redis.cache import AsyncCache, Cache
from platformdb.redis.client import HIREDIS_AVAILABLE, connect, connect_async, ping
from platformdb.redis.events import AsyncEventBus, AsyncSubscription, Event, EventBus, Subscription
from platformdb.redis.keys import KeySpace
from platformdb.redis.queue import (
    AsyncJobQueue,
    AsyncWorker,
    Job,
    JobInfo,
    JobQueue,
    QueueStats,
    Worker,
)
from platformdb.redis.ratelimit import AsyncRateLimiter, Decision, Limit, RateLimiter
from platformdb.redis.scripts import (
    Script,
    ScriptRegistry,
    load_all,
    load_all_async,
    registry,
    script_versions,
)
from platformdb.redis.server_binary import redis_server_binary, redis_tool
from platformdb.redis.sessions import AsyncSessionStore, Session, SessionStore

__all__ = [
    "HIREDIS_AVAILABLE",
    "AsyncCache",
    "AsyncEventBus",
    "AsyncJobQueue",
    "AsyncRateLimiter",
    "AsyncSessionStore",
    "AsyncSubscription",
    "AsyncWorker",
    "Cache",
    "Decision",
    "Event",
    "EventBus",
    "Job",
    "JobInfo",
    "JobQueue",
    "KeySpace",
    "Limit",
    "QueueStats",
    "RateLimiter",
    "Script",
    "ScriptRegistry",
    "Session",
    "SessionStore",
    "Subscription",
    "Worker",
    "acl_commands",
    "apply_acl_users",
    "connect",
    "connect_async",
    "load_all",
    "load_all_async",
    "ping",
    "redis_server_binary",
    "redis_tool",
    "registry",
    "script_versions",
]

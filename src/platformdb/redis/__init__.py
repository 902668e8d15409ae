"""Redis for the platform's services: sessions, cache, rate limits, job queues, events.

Every structure is a small class over a pooled client from :func:`connect`,
written once for asyncio (``AsyncSessionStore``...) with a blocking twin
generated from it (``SessionStore``...). Every multi-step operation is one
function of the ``platformdb`` Redis Functions library (``redis/scripts``),
loaded by ``platformdb migrate up``: atomic, Cluster-safe thanks to shared
hash tags, and services never load code. Every key that belongs to a tenant
carries its org. See ``docs/REDIS.md``.

    from platformdb.redis import connect, RateLimiter, Limit

    limiter = RateLimiter(connect("redis://127.0.0.1:6379/0"), default=Limit(100, 1.0))
    if limiter.allow("org_456", "dv360"):
        ...
"""

from platformdb.redis._events import Event
from platformdb.redis._queue import Job, JobInfo, Lease, QueueStats
from platformdb.redis._ratelimit import Decision, Limit
from platformdb.redis._sessions import Session
from platformdb.redis.cache import Cache
from platformdb.redis.cache_async import AsyncCache
from platformdb.redis.client import HIREDIS_AVAILABLE, connect, connect_async, ping
from platformdb.redis.events import EventBus, Subscription
from platformdb.redis.events_async import AsyncEventBus, AsyncSubscription
from platformdb.redis.functions import FunctionsNotLoaded, Library, library
from platformdb.redis.keys import KeySpace
from platformdb.redis.queue import JobQueue, Worker
from platformdb.redis.queue_async import AsyncJobQueue, AsyncWorker
from platformdb.redis.ratelimit import RateLimiter
from platformdb.redis.ratelimit_async import AsyncRateLimiter
from platformdb.redis.sessions import SessionStore
from platformdb.redis.sessions_async import AsyncSessionStore
from platformdb.redis.tenant import delete_org, org_keys

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
    "FunctionsNotLoaded",
    "Job",
    "JobInfo",
    "JobQueue",
    "KeySpace",
    "Lease",
    "Library",
    "Limit",
    "QueueStats",
    "RateLimiter",
    "Session",
    "SessionStore",
    "Subscription",
    "Worker",
    "connect",
    "connect_async",
    "delete_org",
    "library",
    "org_keys",
    "ping",
]

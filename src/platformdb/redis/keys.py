"""Key names, hash tags and the validation of everything that goes into a key.

The spec's names are kept, with the braces read literally as Redis Cluster
hash tags, and every key that belongs to a tenant carries its org inside the
tag: ``ratelimit:{org_456}:{dv360}``, ``session:{org_456:user_123}``,
``cache:{org_456:campaign}:123``, ``queue:{etl}:job:org_456:<id>``. Redis
hashes only the first ``{...}`` of a key, so every companion key of a
structure repeats the same first tag and lands in the same slot; that is what
lets one function touch them all on a Cluster. See ``redis/schemas/``.

A deployment prefix (``prefix="staging:"``) goes in front of every key. It may
not contain braces, so it can never become, or shift, the hash tag.
"""

from __future__ import annotations

import hashlib
import re

from platformdb.errors import ValidationError

# An id that becomes part of a key: a tenant, user, DSP, job type, cache
# namespace. No ':' so that "a:b" + "c" and "a" + "b:c" can never name the same
# key (tenant isolation), no braces (hash tags), no glob characters (ACL
# patterns, SCAN MATCH), no whitespace.
_ID = re.compile(r"[A-Za-z0-9._@+=-]{1,128}")
# A token that only ever follows the hash tag (session id, job id).
_TOKEN = re.compile(r"[A-Za-z0-9._@+=:-]{1,128}")
# A cache key or tag: anything printable but braces and whitespace.
_FREE = re.compile(r"[^\s{}\x00-\x1f\x7f]{1,512}")
_HANDLE = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[A-Za-z0-9._:/=@+-]{0,64}")


def check_id(value: object, what: str) -> str:
    """``value`` if it may be a hash-tagged id, else :class:`ValidationError`."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValidationError(
            f"invalid {what} {value!r}: use 1-128 characters from A-Z a-z 0-9 . _ @ + = -"
        )
    return value


def check_token(value: object, what: str) -> str:
    """``value`` if it may be a session or job id."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValidationError(
            f"invalid {what} {value!r}: use 1-128 characters from A-Z a-z 0-9 . _ @ + = : -"
        )
    return value


def check_free(value: object, what: str) -> str:
    """``value`` if it may be a cache key or tag (no braces, no whitespace)."""
    if not isinstance(value, str) or not _FREE.fullmatch(value):
        raise ValidationError(
            f"invalid {what} {value!r}: use 1-512 printable characters without whitespace or braces"
        )
    return value


def check_prefix(prefix: object) -> str:
    """A key prefix: at most 64 characters, no braces (they would move the hash tag)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValidationError(
            f"invalid key prefix {prefix!r}: use at most 64 characters from "
            "A-Z a-z 0-9 . _ : / = @ + - (no braces)"
        )
    return prefix


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the whole key when it has no tag)."""
    start = key.find("{")
    if start < 0:
        return key
    end = key.find("}", start + 1)
    if end <= start + 1:
        return key
    return key[start + 1 : end]


def session_handle(session_id: str) -> str:
    """The SHA-256 (hex) of a session id: what names its key. The id itself never
    reaches Redis, so neither ``SCAN``, ``MONITOR`` nor ``SLOWLOG`` can show it."""
    return hashlib.sha256(check_token(session_id, "session_id").encode()).hexdigest()


def check_handle(value: object) -> str:
    if not isinstance(value, str) or not _HANDLE.fullmatch(value):
        raise ValidationError(f"invalid session handle {value!r}: 64 lowercase hex digits")
    return value


class KeySpace:
    """Every key name platformdb uses, built in one place.

    Tenant data carries its org inside the hash tag: ``{<org_id>:<user_id>}``
    for sessions, ``{<org_id>:<namespace>}`` for the cache, ``{<org_id>}`` for
    rate limits; a job's hash is ``queue:{<job_type>}:job:<org_id>:<job_id>``
    (queues are shared by every org; each job names its org). Ids never
    contain ``:``, so the org part cannot be forged from another id.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "") -> None:
        self.prefix = check_prefix(prefix)

    # rate limits -------------------------------------------------------
    def ratelimit(self, org_id: str, dsp: str) -> str:
        return f"{self.prefix}ratelimit:{{{check_id(org_id, 'org_id')}}}:{{{check_id(dsp, 'dsp')}}}"

    # sessions ----------------------------------------------------------
    def session_index(self, org_id: str, user_id: str) -> str:
        org, user = check_id(org_id, "org_id"), check_id(user_id, "user_id")
        return f"{self.prefix}session:{{{org}:{user}}}"

    def session(self, org_id: str, user_id: str, handle: str) -> str:
        return f"{self.session_index(org_id, user_id)}:{check_handle(handle)}"

    # cache -------------------------------------------------------------
    def cache_scope(self, org_id: str | None, namespace: str) -> str:
        """``<org_id>:<namespace>``, or ``<namespace>`` for a platform-wide cache."""
        ns = check_id(namespace, "cache namespace")
        return ns if org_id is None else f"{check_id(org_id, 'org_id')}:{ns}"

    def cache_base(self, scope: str) -> str:
        """``cache:{<scope>}:``; a value key is this plus the cache key."""
        return f"{self.prefix}cache:{{{scope}}}:"

    def cache(self, scope: str, key: str) -> str:
        return self.cache_base(scope) + check_free(key, "cache key")

    def cache_lock(self, scope: str, key: str) -> str:
        return f"{self.prefix}cachelock:{{{scope}}}:{check_free(key, 'cache key')}"

    def cache_tag(self, scope: str, tag: str) -> str:
        return f"{self.prefix}cachetag:{{{scope}}}:{check_free(tag, 'cache tag')}"

    def cache_index(self, scope: str) -> str:
        return f"{self.prefix}cacheidx:{{{scope}}}"

    # queues ------------------------------------------------------------
    def queue(self, job_type: str) -> tuple[str, str, str, str, str, str, str]:
        """ready, processing, claims, delayed, dead, stats, wake of one job type."""
        ready = f"{self.prefix}queue:{{{check_id(job_type, 'job_type')}}}"
        return (
            ready,
            f"{ready}:processing",
            f"{ready}:claims",
            f"{ready}:delayed",
            f"{ready}:dead",
            f"{ready}:stats",
            f"{ready}:wake",
        )

    def queue_admin(self, job_type: str) -> str:
        """``queueadmin:{<job_type>}``: counters of admin steps on the queue (tenant purges).
        Same hash tag as the queue, and outside ``~queue:*``: no service login may touch
        it, which makes the functions that need it admin-only."""
        return f"{self.prefix}queueadmin:{{{check_id(job_type, 'job_type')}}}"

    def job(self, job_type: str, org_id: str, job_id: str) -> str:
        org = check_id(org_id, "org_id")
        return f"{self.queue(job_type)[0]}:job:{org}:{check_token(job_id, 'job_id')}"

    # events ------------------------------------------------------------
    def events(self, org_id: str) -> str:
        return f"{self.prefix}events:{{{check_id(org_id, 'org_id')}}}"

    # usage counters ----------------------------------------------------
    def stats(self, name: str) -> str:
        """``platformdb:stats:<name>``: a hash of platform-wide usage counters (no tenant
        data: per DSP, per cache namespace), read by the exporter."""
        return f"{self.prefix}platformdb:stats:{check_id(name, 'stats name')}"

    # one org's keys ----------------------------------------------------
    def org_patterns(self, org_id: str) -> dict[str, str]:
        """``SCAN MATCH`` patterns that find every key of ``org_id``, by family.

        Ids and prefixes hold no glob characters, and an id never contains
        ``:`` or braces, so ``{org_1:*`` can match neither ``org_10``'s keys
        nor a platform-wide cache (``cache:{<namespace>}``).
        """
        org, p = check_id(org_id, "org_id"), self.prefix
        return {
            "session": f"{p}session:{{{org}:*",
            "cache": f"{p}cache:{{{org}:*",
            "cachetag": f"{p}cachetag:{{{org}:*",
            "cachelock": f"{p}cachelock:{{{org}:*",
            "cacheidx": f"{p}cacheidx:{{{org}:*",
            "ratelimit": f"{p}ratelimit:{{{org}}}:*",
            "job": f"{p}queue:{{*}}:job:{org}:*",
        }

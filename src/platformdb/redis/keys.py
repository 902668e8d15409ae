"""Key names, hash tags and the validation of everything that goes into a key.

The spec's names are kept, with the braces read literally as Redis Cluster
hash tags: ``ratelimit:{org_456}:{dv360}``, ``session:{user_123}``,
``queue:{etl}``, ``cache:{campaign}:123``. Redis hashes only the first
``{...}`` of a key, so every companion key of a structure repeats the same
first tag and lands in the same slot; that is what lets one Lua script touch
them all on a Cluster. See ``redis/schemas/`` for the full list.

A deployment prefix (``prefix="staging:"``) goes in front of every key. It may
not contain braces, so it can never become, or shift, the hash tag.
"""

from __future__ import annotations

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


class KeySpace:
    """Every key name platformdb uses, built in one place."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "") -> None:
        self.prefix = check_prefix(prefix)

    # rate limits -------------------------------------------------------
    def ratelimit(self, org_id: str, dsp: str) -> str:
        return f"{self.prefix}ratelimit:{{{check_id(org_id, 'org_id')}}}:{{{check_id(dsp, 'dsp')}}}"

    # sessions ----------------------------------------------------------
    def session_index(self, user_id: str) -> str:
        return f"{self.prefix}session:{{{check_id(user_id, 'user_id')}}}"

    def session(self, user_id: str, session_id: str) -> str:
        return f"{self.session_index(user_id)}:{check_token(session_id, 'session_id')}"

    # cache -------------------------------------------------------------
    def cache_base(self, namespace: str) -> str:
        """``cache:{namespace}:``; a value key is this plus the cache key."""
        return f"{self.prefix}cache:{{{check_id(namespace, 'cache namespace')}}}:"

    def cache(self, namespace: str, key: str) -> str:
        return self.cache_base(namespace) + check_free(key, "cache key")

    def cache_lock(self, namespace: str, key: str) -> str:
        ns = check_id(namespace, "cache namespace")
        return f"{self.prefix}cachelock:{{{ns}}}:{check_free(key, 'cache key')}"

    def cache_tag(self, namespace: str, tag: str) -> str:
        ns = check_id(namespace, "cache namespace")
        return f"{self.prefix}cachetag:{{{ns}}}:{check_free(tag, 'cache tag')}"

    # queues ------------------------------------------------------------
    def queue(self, job_type: str) -> tuple[str, str, str, str, str, str]:
        """ready, processing, claims, delayed, dead, stats of one job type."""
        ready = f"{self.prefix}queue:{{{check_id(job_type, 'job_type')}}}"
        return (
            ready,
            f"{ready}:processing",
            f"{ready}:claims",
            f"{ready}:delayed",
            f"{ready}:dead",
            f"{ready}:stats",
        )

    def job(self, job_type: str, job_id: str) -> str:
        return f"{self.queue(job_type)[0]}:job:{check_token(job_id, 'job_id')}"

    # events ------------------------------------------------------------
    def events(self, org_id: str) -> str:
        return f"{self.prefix}events:{{{check_id(org_id, 'org_id')}}}"

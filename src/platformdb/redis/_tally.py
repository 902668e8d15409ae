"""Usage counters kept in the process and added to a platform-wide Redis hash in batches.

The rate limiter counts its decisions per DSP, the cache its lookups per
namespace, for the exporter (``platformdb_redis_ratelimit_decisions_total``,
``platformdb_redis_cache_lookups_total``). Counting inside the functions is not
possible for both: a Cluster refuses a function that touches a key outside its
slot, and a rate-limit key's slot is its org's, so a per-DSP total could only
be summed by walking every org's keys; and ``cache_get`` is a read-only
function (``FCALL_RO``, served by replicas) that may not write.

So each limiter and cache counts in memory (a dict under a lock: a fraction of
a microsecond per call) and adds its counts to one hash,
``<prefix>platformdb:stats:<name>``, with ``HINCRBY`` at most every
``interval`` seconds, on the next call after that (one pipelined round trip,
no function call). The counters are therefore sampled: they reach Redis up to
``interval`` seconds late (later when a process stops calling), and a process
that dies loses what it had not added yet. ``flush_stats()`` adds them now (a
worker's shutdown, a test). A failed flush keeps the counts for the next one
and never fails the caller's decision or lookup.
"""

from __future__ import annotations

import logging
import threading
import time

STATS_INTERVAL = 10.0
"""Seconds between two flushes of one limiter's or cache's counters."""

log = logging.getLogger("platformdb.redis.stats")


class Tally:
    """Counters of one hash, flushed at most every ``interval`` seconds."""

    __slots__ = ("_counts", "_due", "_lock", "_warned", "interval", "key")

    def __init__(self, key: str, interval: float = STATS_INTERVAL) -> None:
        self.key = key
        self.interval = max(0.0, float(interval))
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._due = time.monotonic() + self.interval
        self._warned = False

    def add(self, field: str, amount: int = 1) -> bool:
        """Count ``amount`` under ``field``; True when a flush is due."""
        with self._lock:
            self._counts[field] = self._counts.get(field, 0) + amount
        return time.monotonic() >= self._due

    def take(self) -> dict[str, int]:
        """The counts so far (now zero here); the next flush is due one interval later."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._due = time.monotonic() + self.interval
        return counts

    def put_back(self, counts: dict[str, int], error: Exception) -> None:
        """A flush failed: keep ``counts`` for the next one and say so once."""
        with self._lock:
            for field, amount in counts.items():
                self._counts[field] = self._counts.get(field, 0) + amount
        if not self._warned:
            self._warned = True
            log.warning("could not add usage counters to %s (kept for the next try): %s",
                        self.key, error)

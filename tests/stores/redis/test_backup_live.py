"""A Redis backup taken while queue producers and workers run restores, and its queues
hold their invariants (issue 19: keys deleted mid-scan were written as empty values that
staging could not recreate, and queues held orphan job hashes and members without one).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis.client import Redis

from platformdb.redis import connect, functions
from platformdb.redis.queue import JobQueue
from platformdb.stores.redis import backup as redis_backup
from tests.redis.conftest import scratch, scratch_url  # noqa: F401 - fixtures

JOB_TYPES = ("etl", "reports")
ORGS = [str(uuid.uuid4()) for _ in range(3)]
STRUCTURES = {"": "list", ":processing": "list", ":delayed": "zset", ":dead": "list"}


@pytest.fixture
def source_url(scratch_url: str, scratch: Redis) -> str:  # noqa: F811
    functions.load(scratch)
    return scratch_url


def producer(url: str, prefix: str, stop: threading.Event) -> None:
    client = connect(url)
    queues = [JobQueue(client, t, max_attempts=2, backoff=0.001, prefix=prefix)
              for t in JOB_TYPES]
    n = 0
    try:
        while not stop.is_set():
            n += 1
            queue = queues[n % len(queues)]
            queue.enqueue_many([(ORGS[n % len(ORGS)], {"n": n, "k": i}) for i in range(5)],
                               delay=0.002 if n % 4 == 0 else 0.0)
            stop.wait(0.001)
    finally:
        client.close()


def worker(url: str, prefix: str, stop: threading.Event) -> None:
    """Claims jobs and acks most, retries some (delayed, then dead) and keeps some leased."""
    client = connect(url)
    queues = [JobQueue(client, t, max_attempts=2, backoff=0.001, visibility_timeout=60,
                       prefix=prefix) for t in JOB_TYPES]
    n = 0
    try:
        while not stop.is_set():
            for queue in queues:
                for job in queue.claim(4):
                    n += 1
                    if n % 5 == 0:
                        queue.retry(job, "flaky")
                    elif n % 11 == 0:
                        continue  # still running when the backup reads it
                    else:
                        queue.ack(job)
    finally:
        client.close()


def check_queues(client: Redis, prefix: str) -> int:
    """Every member in exactly one of ready/processing/delayed/dead (claims = processing),
    every member with its job hash, every job hash named by exactly one structure."""
    jobs = 0
    for job_type in JOB_TYPES:
        base = f"{prefix}queue:{{{job_type}}}"
        seen: Counter[str] = Counter()
        for suffix, kind in STRUCTURES.items():
            members = (client.lrange(base + suffix, 0, -1) if kind == "list"
                       else client.zrange(base + suffix, 0, -1))
            seen.update(m.decode() for m in members)
        claims = {m.decode() for m in client.zrange(base + ":claims", 0, -1)}
        assert claims == {m.decode() for m in client.lrange(base + ":processing", 0, -1)}
        assert [m for m, count in seen.items() if count > 1] == [], f"{base}: in two places"
        hashes = {key.decode()[len(base) + len(":job:"):]
                  for key in client.scan_iter(match=f"{base}:job:*", count=1000)}
        assert sorted(set(seen) - hashes) == [], f"{base}: members without a job hash"
        assert sorted(hashes - set(seen)) == [], f"{base}: job hashes in no structure"
        for member in list(seen)[:50]:
            assert client.hget(f"{base}:job:{member}", "id") is not None
        jobs += len(seen)
    return jobs


@pytest.mark.slow
def test_a_backup_under_queue_traffic_restores_with_queue_invariants(
        source_url: str, tmp_path: Path) -> None:
    prefix = f"live{uuid.uuid4().hex[:6]}:"
    seed = connect(source_url)
    for job_type in JOB_TYPES:  # a backlog, so the backup's SCAN overlaps the traffic
        JobQueue(seed, job_type, prefix=prefix).enqueue_many(
            [(ORGS[i % len(ORGS)], {"seed": i}) for i in range(3000)])
    seed.close()
    stop = threading.Event()
    threads = [threading.Thread(target=producer, args=(source_url, prefix, stop))
               for _ in range(2)]
    threads += [threading.Thread(target=worker, args=(source_url, prefix, stop))
                for _ in range(3)]
    for thread in threads:
        thread.start()
    folders = []
    try:
        for n in range(3):
            folders.append(redis_backup.backup(source_url, tmp_path / str(n)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    base = source_url.rsplit("/", 1)[0]
    for n, folder in enumerate(folders):
        target_url = f"{base}/{n + 1}"
        report = redis_backup.restore(folder, target_url)
        assert report.mismatches == []
        target = connect(target_url, decode_responses=False)
        assert isinstance(target, Redis)
        try:
            assert check_queues(target, prefix) > 0
            assert not list(target.scan_iter(match=b"__platformdb_restore:*"))
        finally:
            target.flushdb()
            target.close()


def test_a_key_deleted_after_scan_is_skipped(source_url: str, tmp_path: Path) -> None:
    """The read of a key gone since SCAN leaves it out (it was written as an empty value)."""
    client = connect(source_url, decode_responses=False)
    assert isinstance(client, Redis)
    try:
        client.set(b"gone", b"1")
        client.hset(b"h:{t}:gone", mapping={b"a": b"1"})
        client.set(b"kept:{t}", b"2")
        scanned = list(redis_backup._scan(client, "*"))
        client.delete(b"gone", b"h:{t}:gone")
        entries = list(redis_backup._entries(client, scanned, queues=True))
        assert [redis_backup._unb64(e["key"]) for e in entries] == [b"kept:{t}"]
    finally:
        client.close()


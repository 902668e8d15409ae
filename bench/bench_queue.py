"""Job queue benchmark: end-to-end worker throughput, as ratios to baselines run alongside.

1. **platformdb vs RQ.** N jobs are enqueued (batches of 500) while 4 worker
   processes run a no-op handler; the clock runs from the first enqueue to
   the last ack. platformdb's ``Worker`` (blocking claims, leases renewed by
   its heartbeat thread at the default interval) against RQ's ``SimpleWorker``
   (RQ's fastest: its default ``Worker`` forks a process per job) on the same
   Redis. Target: >= 2x.
2. **The cost of lease renewal.** The same, with a handler that sleeps
   ``--job-ms`` (an I/O-bound job, a DSP call) and a heartbeat every fifth of
   that, so every job's lease is renewed several times, against the same run
   with renewal off (``heartbeat=0``). Target: renewal costs <= 10%.

Rounds interleave the variants; the median counts.

Run:  python bench/bench_queue.py --url redis://127.0.0.1:6379/0
      (without --url: PLATFORMDB_REDIS_URL, else the embedded stack)
Needs: pip install 'platformdb[bench]' (RQ); the functions library is loaded
       (FUNCTION LOAD) by the benchmark itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import stack_url
from redis.client import Redis

from platformdb.redis import Job, JobQueue, Worker, connect, functions

WORKERS = 4
BATCH = 500


def noop(*_: object) -> None:
    """The RQ job (RQ imports it by name in its workers)."""


def sleeper(seconds: float) -> None:
    time.sleep(seconds)


# --------------------------------------------------------------- platformdb


def _ours(url: str, prefix: str, job_ms: float, heartbeat: float | None,
          ready: Any, stop: Any) -> None:
    client = connect(url)
    queue = JobQueue(client, "bench", visibility_timeout=max(5.0, job_ms / 100), prefix=prefix)
    seconds = job_ms / 1000

    def handle(job: Job) -> None:
        if seconds:
            time.sleep(seconds)

    worker = Worker(queue, handle, heartbeat=heartbeat, block_timeout=0.2)
    ready.set()
    threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
    worker.run()


def run_ours(url: str, jobs: int, job_ms: float, heartbeat: float | None) -> float:
    """Jobs per second through platformdb's Worker."""
    prefix = f"bq{uuid.uuid4().hex[:8]}:"
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(WORKERS)]
    stop = ctx.Event()
    procs = [ctx.Process(target=_ours, args=(url, prefix, job_ms, heartbeat, r, stop))
             for r in ready]
    for proc in procs:
        proc.start()
    for event in ready:
        event.wait(60)
    client = connect(url)
    queue = JobQueue(client, "bench", prefix=prefix)
    time.sleep(0.5)  # every worker is blocked on the wake-up list
    began = time.perf_counter()
    for start in range(0, jobs, BATCH):
        queue.enqueue_many([("org_1", {"n": n}) for n in range(start, min(jobs, start + BATCH))])
    while queue.stats().counters.get("acked", 0) < jobs:
        time.sleep(0.002)
    elapsed = time.perf_counter() - began
    stop.set()
    for proc in procs:
        proc.join(30)
    cleanup(client, prefix)
    return jobs / elapsed


# ---------------------------------------------------------------------- RQ


def _rq(url: str, name: str, ready: Any) -> None:
    from rq import Queue, SimpleWorker

    redis = Redis.from_url(url)
    worker = SimpleWorker([Queue(name, connection=redis)], connection=redis)
    ready.set()
    worker.work(burst=False, logging_level="WARNING", with_scheduler=False)


def run_rq(url: str, jobs: int, job_ms: float) -> float:
    """Jobs per second through RQ's SimpleWorker (no fork per job)."""
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    name = f"bq{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(WORKERS)]
    procs = [ctx.Process(target=_rq, args=(url, name, r)) for r in ready]
    for proc in procs:
        proc.start()
    for event in ready:
        event.wait(60)
    redis = Redis.from_url(url)
    queue = Queue(name, connection=redis)
    finished = FinishedJobRegistry(name, connection=redis)
    func: Callable[..., None] = sleeper if job_ms else noop
    args = (job_ms / 1000,) if job_ms else ()
    time.sleep(0.5)
    began = time.perf_counter()
    for start in range(0, jobs, BATCH):
        queue.enqueue_many([Queue.prepare_data(func, args)
                            for _ in range(start, min(jobs, start + BATCH))])
    while finished.count < jobs:
        time.sleep(0.002)
    elapsed = time.perf_counter() - began
    for proc in procs:
        proc.terminate()
        proc.join(30)
    for key in redis.scan_iter(match=f"*{name}*", count=1000):
        redis.delete(key)
    return jobs / elapsed


# ---------------------------------------------------------------------- main


def cleanup(client: Any, prefix: str) -> None:
    batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(batch), 500):
        client.unlink(*batch[i: i + 500])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("PLATFORMDB_REDIS_URL"))
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per no-op round")
    parser.add_argument("--lease-jobs", type=int, default=400, help="jobs per lease round")
    parser.add_argument("--job-ms", type=float, default=20.0, help="the lease rounds' job length")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    url = opts.url or stack_url("redis")
    client = connect(url)
    functions.load(client)
    server = client.info("server")
    print(f"server: {server.get('server_name', 'redis')} "
          f"{server.get('valkey_version') or server.get('redis_version')} at {url.split('@')[-1]}")
    print(f"client: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()} {platform.system()}; {WORKERS} worker processes each")
    heartbeat = opts.job_ms / 5000
    print(f"workload: {opts.jobs} no-op jobs; {opts.lease_jobs} jobs of {opts.job_ms:.0f} ms "
          f"with a heartbeat every {heartbeat * 1000:.0f} ms vs none; "
          f"{opts.rounds} rounds, median\n")
    runs: dict[str, list[float]] = {k: [] for k in ("ours", "rq", "renewed", "plain")}
    for _ in range(opts.rounds):
        runs["ours"].append(run_ours(url, opts.jobs, 0, None))
        runs["rq"].append(run_rq(url, opts.jobs, 0))
        runs["renewed"].append(run_ours(url, opts.lease_jobs, opts.job_ms, heartbeat))
        runs["plain"].append(run_ours(url, opts.lease_jobs, opts.job_ms, 0))
    for name, values in runs.items():
        print(f"  {name:<8} " + "  ".join(f"{v:>9,.0f}/s" for v in values))
    ours, rq, renewed, plain = (statistics.median(runs[k]) for k in
                                ("ours", "rq", "renewed", "plain"))
    print()
    rows = [
        ("platformdb Worker, no-op", ours, "RQ SimpleWorker, no-op", rq, 2.0, ">="),
        (f"{opts.job_ms:.0f} ms jobs, leases renewed", renewed,
         f"{opts.job_ms:.0f} ms jobs, no renewal", plain, 0.9, ">="),
    ]
    for name, value, base_name, base, target, _ in rows:
        ratio = value / base
        verdict = "ok" if ratio >= target else "below target"
        print(f"{name:<34} {value:>9,.0f}/s  vs {base_name:<30} {base:>9,.0f}/s  = "
              f"{ratio:5.2f}x  (target >= {target}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

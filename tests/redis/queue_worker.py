"""A worker process for the queue tests: ``python queue_worker.py URL PREFIX [options]``.

Payload kinds: "ok" (record and succeed), "poison" (always raise), "slow"
(announce itself under ``<prefix>test:busy:<pid>``, sleep ``seconds`` (0.5
by default; only on the first attempt with "first_run_only"), succeed). The
tests kill workers with SIGKILL while they are inside a slow job, and stop
the rest with SIGTERM. Every run of a job is counted in ``<prefix>test:runs``
(job id -> runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from platformdb.redis import Job, JobQueue, Worker, connect


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--visibility", type=float, default=1.0)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--grace", type=float, default=30.0)
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    client = connect(opts.url)
    queue = JobQueue(client, "etl", visibility_timeout=opts.visibility, max_attempts=3,
                     backoff=0.01, max_backoff=0.05, prefix=opts.prefix)
    busy = f"{opts.prefix}test:busy:{os.getpid()}"
    processed = f"{opts.prefix}test:processed"
    runs = f"{opts.prefix}test:runs"

    def handle(job: Job) -> None:
        client.hincrby(runs, job.id, 1)
        kind = job.payload["kind"]
        if kind == "poison":
            raise ValueError(f"poison job {job.payload['n']}")
        if kind == "slow" and (job.attempt == 1 or not job.payload.get("first_run_only")):
            client.set(busy, job.id)
            time.sleep(float(job.payload.get("seconds", 0.5)))
            client.delete(busy)
        client.sadd(processed, job.id)

    worker = Worker(queue, handle, heartbeat=opts.heartbeat, grace=opts.grace,
                    block_timeout=0.2)
    print("ready", flush=True)
    worker.run(handle_signals=True)
    print(f"stopped after {worker.processed} jobs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A worker process for the queue tests: ``python queue_worker.py URL PREFIX``.

Payload kinds: "ok" (record and succeed), "poison" (always raise), "slow"
(announce itself under ``<prefix>test:busy:<pid>``, sleep, succeed): the
test kills workers with SIGKILL while they are inside a slow job, and stops
the rest with SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from platformdb.redis import Job, JobQueue, Worker, connect


def main() -> int:
    url, prefix = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.WARNING)
    client = connect(url)
    queue = JobQueue(
        client,
        "etl",
        visibility_timeout=1.0,
        max_attempts=3,
        backoff=0.01,
        max_backoff=0.05,
        prefix=prefix,
    )
    busy = f"{prefix}test:busy:{os.getpid()}"
    processed = f"{prefix}test:processed"

    def handle(job: Job) -> None:
        kind = job.payload["kind"]
        if kind == "poison":
            raise ValueError(f"poison job {job.payload['n']}")
        if kind == "slow":
            client.set(busy, job.id)
            time.sleep(0.5)
            client.delete(busy)
        client.sadd(processed, job.id)

    worker = Worker(queue, handle, poll_interval=0.05)
    print("ready", flush=True)
    worker.run(handle_signals=True)
    print(f"stopped after {worker.processed} jobs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

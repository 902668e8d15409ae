"""Erasing a big tenant from Redis: time, and what every other client sees meanwhile.

An org holds ``--jobs`` queued jobs (default 100,000: 80% ready, 15% delayed, 5%
dead) in the shared ``etl`` queue, between 20,000 jobs of other orgs. Each round
loads that data and erases the org twice, in alternating order:

- ours: ``platformdb.redis.delete_org`` (one SCAN pass for the org's keys, then
  ``queue_purge_org`` in bounded steps of ``PURGE_CHUNK`` members, which also
  takes the members out of the shared lists and sets);
- plain: ``UNLINK`` of the same job hashes, their names already known, pipelined
  1,000 per round trip (no search, and the members stay in the lists: less work
  than an erasure needs, so the ratio is an upper bound).

While each runs, a probe thread on its own connection sends ``PING`` and ``GET``
back to back and records every round trip. Prints the median of the rounds with
their range, the ratio ours / plain (target <= 2x) and the probe's worst and
median round trip (target: worst < 50 ms).

Run:  .venv/bin/python bench/bench_erasure.py [--url redis://...] [--jobs 100000] [--rounds 5]
      (without --url: PLATFORMDB_REDIS_URL, else the embedded stack)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from _common import stack_url
from redis.client import Redis

from platformdb.redis import connect, delete_org, functions
from platformdb.redis.keys import KeySpace
from platformdb.redis.tenant import PURGE_CHUNK

OTHERS = 20_000
SLOWLOG_LEN = 20_000
STEPS: list[float] = []  # server time of every purge step (ms), from the slow log


def load(client: Redis, prefix: str, org: str, jobs: int) -> list[str]:
    """The org's jobs among other orgs' (written as an import writes them); its job keys."""
    ready, _processing, _claims, delayed, dead = KeySpace(prefix).queue("etl")[:5]
    names = []
    pipe: Any = client.pipeline(transaction=False)
    every = max(1, jobs // OTHERS)
    other = 0
    for i in range(jobs):
        member = f"{org}:job{i}"
        names.append(f"{ready}:job:{member}")
        pipe.hset(names[-1], mapping={"id": f"job{i}", "org_id": org, "payload": '{"n":1}',
                                      "attempts": 0, "max_attempts": 5, "lease": 0,
                                      "enqueued_at": 1})
        kind = i % 20
        if kind < 16:
            pipe.lpush(ready, member)
        elif kind < 19:
            pipe.zadd(delayed, {member: 10**13 + i})
        else:
            pipe.rpush(dead, member)
        if i % every == 0 and other < OTHERS:
            member = f"org_other{other % 50}:job{other}"
            pipe.hset(f"{ready}:job:{member}", mapping={"id": f"job{other}", "payload": "{}"})
            pipe.lpush(ready, member)
            other += 1
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    return names


def plain(client: Redis, names: list[str]) -> None:
    for i in range(0, len(names), 1000):
        pipe: Any = client.pipeline(transaction=False)
        for name in names[i : i + 1000]:
            pipe.unlink(name)
        pipe.execute()


def probe(url: str, key: str, stop: Any, out: Any) -> None:
    """Another client, in its own process (no GIL shared with the erasure): PING and GET
    back to back until ``stop`` is set; its round trips go to ``out``."""
    client: Any = connect(url)
    rtts = []
    while not stop.is_set():
        for command in (client.ping, lambda: client.get(key)):
            started = time.perf_counter()
            command()
            rtts.append(time.perf_counter() - started)
    out.send(rtts)
    client.close()


def timed(client: Redis, url: str, key: str,
          work: Callable[[], object]) -> tuple[float, list[float], float]:
    """Seconds ``work`` took, the probe's round trips meanwhile and the longest command the
    server ran meanwhile (its slow log, ms)."""
    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=probe, args=(url, key, stop, send))
    process.start()
    time.sleep(0.3)
    client.slowlog_reset()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    slow = client.slowlog_get(SLOWLOG_LEN)
    stop.set()
    rtts = receive.recv()
    process.join()
    durations = [int(entry["duration"]) / 1000 for entry in slow
                 if "queue_purge_org" in str(entry["command"])]
    STEPS.extend(durations)
    longest = max((int(entry["duration"]) for entry in slow), default=0) / 1000
    return elapsed, rtts, longest


def spread(values: list[float], scale: float = 1.0, unit: str = "s") -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.3f} {unit} (range {min(v):.3f}-{max(v):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("PLATFORMDB_REDIS_URL"))
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    url = opts.url or stack_url("redis")
    client = connect(url)
    assert isinstance(client, Redis)
    functions.load(client)
    prefix = f"bench-erasure-{uuid.uuid4().hex[:8]}:"
    org = "org_big"
    probe_key = f"{prefix}probe"
    client.set(probe_key, "x")
    saved = {name: client.config_get(name)[name]
             for name in ("slowlog-log-slower-than", "slowlog-max-len")}
    # every command over 0.5 ms: each purge step, and whatever else the server was slow at
    client.config_set("slowlog-log-slower-than", 500)
    client.config_set("slowlog-max-len", SLOWLOG_LEN)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    worst: dict[str, list[float]] = {"ours": [], "plain": []}
    longest: dict[str, list[float]] = {"ours": [], "plain": []}
    rtts: dict[str, list[float]] = {"ours": [], "plain": []}
    ratios = []
    try:
        for round_no in range(opts.rounds):
            order = ("ours", "plain") if round_no % 2 == 0 else ("plain", "ours")
            took = {}
            for method in order:
                names = load(client, prefix, org, opts.jobs)
                if method == "ours":
                    elapsed, seen, slow = timed(client, url, probe_key,
                                                lambda: delete_org(client, org, prefix=prefix))
                    left = list(client.scan_iter(match=f"{prefix}*{org}*", count=1000))
                    assert not left, f"{len(left)} keys of the org left"
                else:
                    elapsed, seen, slow = timed(client, url, probe_key,
                                                lambda n=names: plain(client, n))
                took[method] = elapsed
                times[method].append(elapsed)
                worst[method].append(max(seen))
                longest[method].append(slow)
                rtts[method].extend(seen)
                for key in client.scan_iter(match=f"{prefix}queue:*", count=1000):
                    client.unlink(key)  # the lists and the other orgs' jobs: next round
            ratios.append(took["ours"] / took["plain"])
            print(f"round {round_no + 1}: ours {took['ours']:.3f} s, plain {took['plain']:.3f} s,"
                  f" worst round trip ours {worst['ours'][-1] * 1000:.1f} ms, plain"
                  f" {worst['plain'][-1] * 1000:.1f} ms; longest command ours"
                  f" {longest['ours'][-1]:.1f} ms, plain {longest['plain'][-1]:.1f} ms",
                  flush=True)
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.unlink(key)
        for name, value in saved.items():
            client.config_set(name, value)
        client.close()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {opts.jobs} jobs of one org + {OTHERS} of others, "
          f"{opts.rounds} interleaved rounds, purge steps of {PURGE_CHUNK} members")
    print(f"erase (delete_org):      {spread(times['ours'])}")
    print(f"plain UNLINK of the jobs: {spread(times['plain'])}")
    print(f"ratio ours / plain:      {spread(ratios, unit='x')}  (target <= 2x)")
    for method in ("ours", "plain"):
        print(f"other client's round trip during {method}: worst {max(worst[method]) * 1000:.1f}"
              f" ms (per round {spread(worst[method], 1000, 'ms')}), median "
              f"{statistics.median(rtts[method]) * 1000:.2f} ms over {len(rtts[method])} calls"
              + ("  (target: worst < 50 ms)" if method == "ours" else ""))
        print(f"longest command on the server during {method} (slow log): "
              f"{max(longest[method]):.1f} ms (per round {spread(longest[method], 1, 'ms')})")
    if STEPS:
        STEPS.sort()
        p99 = STEPS[int(len(STEPS) * 0.99)]
        print(f"server time of one purge step: median {statistics.median(STEPS):.1f} ms, p99 "
              f"{p99:.1f} ms, max {STEPS[-1]:.1f} ms ({len(STEPS)} steps)")


if __name__ == "__main__":
    main()

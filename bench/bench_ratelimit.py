"""Rate-limiter benchmark: decisions per second, each a ratio to a baseline run alongside.

1. ``RateLimiter.allow`` (one decision per round trip) and ``RateLimiter.allow_many``
   (pipelined, ``--pipeline`` decisions per round trip), against ``redis-benchmark``
   (or ``valkey-benchmark``) sending the very same ``EVALSHA ratelimit_allow`` with the
   same number of connections and the same pipeline depth: the cost of the Python
   layer over a C client (target >= 0.6x).
2. The same two against the ``limits`` library's Redis moving-window limiter
   (``MovingWindowRateLimiter.hit``), the usual Python choice (target >= 1.5x).

Every variant decides for ``--orgs`` orgs in turn on one DSP, with a limit high enough
that every request is admitted (the same Lua path in every run), for ``--seconds``
seconds, ``--rounds`` times; the median counts.

Run:  python bench/bench_ratelimit.py --url redis://127.0.0.1:6379/0
      (without --url: PLATFORMDB_REDIS_URL, else the embedded stack)
Needs: pip install limits (the peer library); redis-benchmark or valkey-benchmark.
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from redis.client import Redis

from platformdb.redis import HIREDIS_AVAILABLE, Limit, RateLimiter, connect, load_all, redis_tool

LIMIT = Limit(1_000_000, 1.0)  # never refuses: every variant runs the admit path
DSP = "dv360"


# ----------------------------------------------------------------- workloads


def run_for(seconds: float, step: Callable[[int], int]) -> float:
    """Call ``step(i)`` (which returns decisions made) for ``seconds``; decisions/s."""
    done = 0
    i = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        for _ in range(20):
            done += step(i)
            i += 1
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - began)


def platformdb_single(url: str, prefix: str, orgs: list[str], seconds: float) -> float:
    limiter = RateLimiter(connect(url), LIMIT, prefix=prefix)
    n = len(orgs)

    def step(i: int) -> int:
        limiter.allow(orgs[i % n], DSP)
        return 1

    run_for(min(0.5, seconds), step)  # warm-up: connections, script cache
    return run_for(seconds, step)


def platformdb_pipelined(
    url: str, prefix: str, orgs: list[str], seconds: float, depth: int
) -> float:
    limiter = RateLimiter(connect(url), LIMIT, prefix=prefix)
    n = len(orgs)
    batches = [[(orgs[(b * depth + j) % n], DSP) for j in range(depth)] for b in range(n)]

    def step(i: int) -> int:
        return len(limiter.allow_many(batches[i % n]))

    run_for(min(0.5, seconds), step)
    return run_for(seconds, step)


def limits_single(url: str, token: str, orgs: list[str], seconds: float) -> float:
    from limits import RateLimitItemPerSecond
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    limiter = MovingWindowRateLimiter(storage_from_string(url))
    item = RateLimitItemPerSecond(LIMIT.requests)
    names = [f"{token}-{org}" for org in orgs]
    n = len(names)

    def step(i: int) -> int:
        limiter.hit(item, names[i % n], DSP)
        return 1

    run_for(min(0.5, seconds), step)
    return run_for(seconds, step)


def _worker(args: tuple[str, str, str, list[str], float, int]) -> float:
    kind, url, prefix, orgs, seconds, depth = args
    if kind == "single":
        return platformdb_single(url, prefix, orgs, seconds)
    if kind == "pipelined":
        return platformdb_pipelined(url, prefix, orgs, seconds, depth)
    return limits_single(url, prefix, orgs, seconds)


def in_processes(
    clients: int, kind: str, url: str, prefix: str, orgs: list[str], seconds: float, depth: int
) -> float:
    """Total decisions/s of ``clients`` processes (one connection each)."""
    if clients == 1:
        return _worker((kind, url, prefix, orgs, seconds, depth))
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        return sum(pool.map(_worker, [(kind, url, prefix, orgs, seconds, depth)] * clients))


def redis_benchmark(
    url: str,
    sha: str,
    prefix: str,
    orgs: int,
    seconds: float,
    depth: int,
    clients: int,
    estimate: float,
) -> float:
    """``redis-benchmark`` sending the same EVALSHA for about ``seconds``; its requests/s."""
    parts = urlsplit(url)
    requests = max(1000, int(estimate * seconds))
    cmd = [
        str(redis_tool("benchmark")),
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "-c",
        str(clients),
        "-P",
        str(depth),
        "-n",
        str(requests),
        "-r",
        str(orgs),
        "--csv",
    ]
    if parts.password:
        cmd += ["-a", unquote(parts.password)]
        if parts.username:
            cmd += ["--user", unquote(parts.username)]
    db = parts.path.strip("/")
    if db and db != "0":
        cmd += ["--dbnum", db]
    key = f"{prefix}ratelimit:{{org__rand_int__}}:{{{DSP}}}"
    cmd += ["EVALSHA", sha, "1", key, str(LIMIT.requests), str(LIMIT.window_ms), "b__rand_int__"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return float(rows[-1][1])


# ---------------------------------------------------------------------- main


def default_url() -> str:
    from platformdb import embedded
    from platformdb.config import load_settings

    settings = embedded.resolve(load_settings(), redis=True)
    assert settings.redis_url is not None
    return settings.redis_url


def cleanup(client: Redis, patterns: list[str]) -> None:
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i : i + 500])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("PLATFORMDB_REDIS_URL"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline", type=int, default=50, help="decisions per round trip")
    parser.add_argument("--clients", type=int, default=1, help="processes / connections")
    parser.add_argument("--orgs", type=int, default=1000)
    opts = parser.parse_args()
    url = opts.url or default_url()
    if urlsplit(url).scheme not in ("redis", "rediss"):
        parser.error("the benchmark needs a standalone redis:// URL")

    client = connect(url)
    assert isinstance(client, Redis)
    sha = load_all(client)["ratelimit_allow"]
    token = f"bench{uuid.uuid4().hex[:8]}"
    prefix = f"{token}:"
    orgs = [f"org{i:012d}" for i in range(opts.orgs)]  # the names redis-benchmark's -r makes
    server = client.info("server")
    name = server.get("server_name", "redis")
    version = server.get("valkey_version") or server.get("redis_version")
    print(
        f"server: {name} {version} at {url.split('@')[-1]}, bench tool: {redis_tool('benchmark')}"
    )
    print(
        f"client: Python {platform.python_version()}, redis-py hiredis={HIREDIS_AVAILABLE}, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}"
    )
    print(
        f"workload: {opts.orgs} orgs x {DSP}, limit {LIMIT.requests}/{LIMIT.window}s, "
        f"{opts.clients} connection(s), {opts.rounds} rounds x {opts.seconds}s, median\n"
    )

    try:
        import limits  # noqa: F401

        have_limits = True
    except ImportError:
        have_limits = False

    def ours(kind: str, depth: int) -> float:
        return in_processes(opts.clients, kind, url, prefix, orgs, opts.seconds, depth)

    def theirs(depth: int, estimate: float) -> float:
        return redis_benchmark(
            url, sha, prefix, opts.orgs, opts.seconds, depth, opts.clients, estimate
        )

    # Rounds interleave the variants so that drift in machine load hits all alike.
    runs: dict[str, list[float]] = {k: [] for k in ("single", "b1", "piped", "bP", "peer")}
    try:
        for _ in range(opts.rounds):
            runs["single"].append(ours("single", 1))
            runs["b1"].append(theirs(1, runs["single"][-1]))
            runs["piped"].append(ours("pipelined", opts.pipeline))
            runs["bP"].append(theirs(opts.pipeline, runs["piped"][-1] * 1.5))
            if have_limits:
                runs["peer"].append(
                    in_processes(opts.clients, "limits", url, token, orgs, opts.seconds, 1)
                )
    finally:
        cleanup(client, [f"{prefix}*", f"*{token}*"])
    single, bench_single, piped, bench_piped = (
        statistics.median(runs[k]) for k in ("single", "b1", "piped", "bP")
    )
    peer = statistics.median(runs["peer"]) if have_limits else None

    rows = [
        (
            "RateLimiter.allow (1 per round trip)",
            single,
            "redis-benchmark EVALSHA -P 1",
            bench_single,
            0.6,
        ),
        (
            f"RateLimiter.allow_many (pipeline {opts.pipeline})",
            piped,
            f"redis-benchmark EVALSHA -P {opts.pipeline}",
            bench_piped,
            0.6,
        ),
    ]
    if peer is not None:
        rows += [
            (
                "RateLimiter.allow (1 per round trip)",
                single,
                "limits moving window hit()",
                peer,
                1.5,
            ),
            (
                f"RateLimiter.allow_many (pipeline {opts.pipeline})",
                piped,
                "limits moving window hit()",
                peer,
                1.5,
            ),
        ]
    width = max(len(r[0]) for r in rows)
    for name, value, base_name, base, target in rows:
        ratio = value / base
        verdict = "ok" if ratio >= target else "below target"
        print(
            f"{name:<{width}}  {value:>9,.0f}/s  vs {base_name:<30} {base:>9,.0f}/s"
            f"  = {ratio:5.2f}x  (target >= {target}x: {verdict})"
        )
    if peer is None:
        print("limits is not installed: pip install limits for the peer-library comparison")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())

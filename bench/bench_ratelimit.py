"""Rate-limiter and session benchmark: calls per second, each a ratio to a baseline run alongside.

1. ``RateLimiter.allow`` (one decision per round trip) and ``allow_many``
   (``--pipeline`` decisions per round trip) against ``redis-benchmark`` (or
   ``valkey-benchmark``) sending the very same ``FCALL platformdb_ratelimit_allow``
   with the same connections and pipeline depth: the cost of the Python layer
   over a C client (target >= 0.6x).
2. With ``--baseline-src`` (the ``src`` of another checkout, e.g. a worktree
   of main): the limiter and the session calls (``SessionStore.get``, which
   reads and slides a session, and ``create``) of this checkout against that
   one, same server, same run (target: within 10%, >= 0.9x).
3. ``RateLimiter.allow`` against a bare ``client.fcall`` through redis-py's
   own path: what the direct path (``platformdb/redis/_direct.py``) earns.
4. With ``limits`` installed: against its moving-window limiter, the usual
   Python choice (target >= 1.5x).

Every workload runs in its own process (``PYTHONPATH`` = the checkout's
``src``), for ``--seconds`` after a warm-up, ``--rounds`` times interleaved;
the median counts. Every limiter call is admitted (the same Lua path).

Run:  python bench/bench_ratelimit.py --url redis://127.0.0.1:6379/0 \\
          [--baseline-src /tmp/redis-baseline/src]
      (without --url: PLATFORMDB_REDIS_URL, else the embedded stack)
Needs: redis-benchmark or valkey-benchmark; pip install 'platformdb[bench]' for limits.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

SRC = Path(__file__).resolve().parents[1] / "src"
LIMIT_REQUESTS, LIMIT_WINDOW = 1_000_000, 1.0  # never refuses: every call runs the admit path
DSP = "dv360"
KINDS = ("allow", "allow_many", "session_get", "session_create", "bare_fcall", "limits")


# ------------------------------------------------- workloads (in a subprocess)


def run_for(seconds: float, step: Callable[[int], int]) -> float:
    """Call ``step(i)`` (which returns calls made) for ``seconds``; calls per second."""
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


def workload(kind: str, url: str, prefix: str, seconds: float, depth: int, orgs: int) -> float:
    """One workload against whichever platformdb is on sys.path (this one or a baseline).

    A baseline from before the org-scoped API (main at 7f9054b) has
    ``platformdb.redis.registry``; this one has ``platformdb.redis.library``.
    """
    import platformdb.redis as pdb

    new_api = hasattr(pdb, "library")
    client = pdb.connect(url)
    names = [f"org{i:012d}" for i in range(orgs)]  # the names redis-benchmark's -r makes
    n = len(names)
    step: Callable[[int], int]
    if kind in ("allow", "allow_many"):
        limiter = pdb.RateLimiter(client, pdb.Limit(LIMIT_REQUESTS, LIMIT_WINDOW), prefix=prefix)
        if kind == "allow":
            def step(i: int) -> int:
                limiter.allow(names[i % n], DSP)
                return 1
        else:
            batches = [[(names[(b * depth + j) % n], DSP) for j in range(depth)] for b in range(n)]

            def step(i: int) -> int:
                return len(limiter.allow_many(batches[i % n]))
    elif kind == "bare_fcall":
        version = pdb.library().version
        keys = [f"{prefix}ratelimit:{{{name}}}:{{{DSP}}}" for name in names]

        def step(i: int) -> int:
            client.fcall("platformdb_ratelimit_allow", 1, keys[i % n], LIMIT_REQUESTS,
                         int(LIMIT_WINDOW * 1000), f"b{i}", version)
            return 1
    elif kind in ("session_get", "session_create"):
        store = pdb.SessionStore(client, idle_ttl=600, prefix=prefix)
        users = [f"user_{i}" for i in range(200)]

        def create(user: str) -> Any:
            if new_api:
                return store.create(user, org_id="org_1")
            return store.create(user, "org_1")

        if kind == "session_get":
            sessions = [(user, create(user).session_id) for user in users]

            def step(i: int) -> int:
                user, sid = sessions[i % len(sessions)]
                got = (store.get(user, sid, org_id="org_1") if new_api else store.get(user, sid))
                assert got is not None
                return 1
        else:
            def step(i: int) -> int:
                create(users[i % len(users)])
                return 1
    elif kind == "limits":
        from limits import RateLimitItemPerSecond
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        peer = MovingWindowRateLimiter(storage_from_string(url))
        item = RateLimitItemPerSecond(LIMIT_REQUESTS)
        keys = [f"{prefix}{name}" for name in names]

        def step(i: int) -> int:
            peer.hit(item, keys[i % n], DSP)
            return 1
    else:
        raise SystemExit(f"unknown workload {kind}")
    run_for(min(0.5, seconds), step)  # warm-up: connections, caches
    return run_for(seconds, step)


def measure(src: Path, kind: str, url: str, prefix: str, opts: argparse.Namespace) -> float:
    """Run ``kind`` in a fresh process with ``src`` first on its path; calls per second."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, __file__, "--workload", kind, "--url", url, "--prefix", prefix,
            "--seconds", str(opts.seconds), "--pipeline", str(opts.pipeline),
            "--orgs", str(opts.orgs)]
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True,
                         timeout=600).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rate"])


# --------------------------------------------------------------- the C baseline


def redis_benchmark(url: str, prefix: str, version: int, opts: argparse.Namespace, depth: int,
                    estimate: float) -> float:
    """``redis-benchmark`` sending the same FCALL for about ``--seconds``; its requests/s."""
    from platformdb.redis import redis_tool

    parts = urlsplit(url)
    requests = max(1000, int(estimate * opts.seconds))
    cmd = [str(redis_tool("benchmark")), "-h", parts.hostname or "127.0.0.1",
           "-p", str(parts.port or 6379), "-c", "1", "-P", str(depth), "-n", str(requests),
           "-r", str(opts.orgs), "--csv"]
    if parts.password:
        cmd += ["-a", unquote(parts.password)]
        if parts.username:
            cmd += ["--user", unquote(parts.username)]
    db = parts.path.strip("/")
    if db and db != "0":
        cmd += ["--dbnum", db]
    key = f"{prefix}ratelimit:{{org__rand_int__}}:{{{DSP}}}"
    cmd += ["FCALL", "platformdb_ratelimit_allow", "1", key, str(LIMIT_REQUESTS),
            str(int(LIMIT_WINDOW * 1000)), "b__rand_int__", str(version)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    return float(list(csv.reader(io.StringIO(out)))[-1][1])


# ---------------------------------------------------------------------- main


def default_url() -> str:
    from platformdb import embedded
    from platformdb.config import load_settings

    settings = embedded.resolve(load_settings(), redis=True)
    assert settings.redis_url is not None
    return settings.redis_url


def cleanup(client: Any, patterns: list[str]) -> None:
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i: i + 500])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("PLATFORMDB_REDIS_URL"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline", type=int, default=50, help="decisions per round trip")
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="the src folder of the checkout to compare with (e.g. main)")
    parser.add_argument("--workload", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.workload:  # a child process: one measurement, as JSON
        rate = workload(opts.workload, opts.url, opts.prefix, opts.seconds, opts.pipeline,
                        opts.orgs)
        print(json.dumps({"rate": rate}))
        return 0

    sys.path.insert(0, str(SRC))
    from platformdb.redis import HIREDIS_AVAILABLE, connect, functions, library, redis_tool

    url = opts.url or default_url()
    if urlsplit(url).scheme not in ("redis", "rediss"):
        parser.error("the benchmark needs a standalone redis:// URL")
    client = connect(url)
    functions.load(client)
    token = f"bench{uuid.uuid4().hex[:8]}"
    prefix = f"{token}:"
    server = client.info("server")
    print(f"server: {server.get('server_name', 'redis')} "
          f"{server.get('valkey_version') or server.get('redis_version')} at "
          f"{url.split('@')[-1]}, bench tool: {redis_tool('benchmark')}")
    print(f"client: Python {platform.python_version()}, redis-py hiredis={HIREDIS_AVAILABLE}, "
          f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}")
    print(f"workload: {opts.orgs} orgs x {DSP}, 1 connection, {opts.rounds} rounds x "
          f"{opts.seconds}s, median; baseline: {opts.baseline_src or '-'}\n")
    try:
        import limits  # noqa: F401

        have_limits = True
    except ImportError:
        have_limits = False

    ours = {k: [] for k in ("allow", "allow_many", "session_get", "session_create",
                            "bare_fcall")}  # type: dict[str, list[float]]
    base: dict[str, list[float]] = {k: [] for k in ("allow", "allow_many", "session_get",
                                                     "session_create")}
    bench: dict[str, list[float]] = {"P1": [], "PN": []}
    peer: list[float] = []
    try:
        for _ in range(opts.rounds):
            for kind in ours:
                ours[kind].append(measure(SRC, kind, url, prefix, opts))
                if opts.baseline_src and kind in base:
                    base[kind].append(measure(opts.baseline_src, kind, url, f"b{prefix}", opts))
            bench["P1"].append(redis_benchmark(url, prefix, library().version, opts, 1,
                                               ours["allow"][-1]))
            bench["PN"].append(redis_benchmark(url, prefix, library().version, opts,
                                               opts.pipeline, ours["allow_many"][-1] * 1.5))
            if have_limits:
                peer.append(measure(SRC, "limits", url, prefix, opts))
    finally:
        cleanup(client, [f"{prefix}*", f"b{prefix}*", f"*{token}*"])
    med = {k: statistics.median(v) for k, v in ours.items()}
    print("raw (calls/s per round):")
    for name, values in [*ours.items(), *((f"baseline {k}", v) for k, v in base.items() if v),
                         *((f"redis-benchmark {k}", v) for k, v in bench.items()),
                         *((("limits", peer),) if peer else ())]:
        print(f"  {name:<24} " + "  ".join(f"{v:>9,.0f}" for v in values))
    print()
    rows = [
        ("RateLimiter.allow (1 per round trip)", med["allow"],
         "redis-benchmark FCALL -P 1", statistics.median(bench["P1"]), 0.6),
        (f"RateLimiter.allow_many (pipeline {opts.pipeline})", med["allow_many"],
         f"redis-benchmark FCALL -P {opts.pipeline}", statistics.median(bench["PN"]), 0.6),
        ("RateLimiter.allow (direct path)", med["allow"],
         "bare redis-py client.fcall", med["bare_fcall"], 1.0),
    ]
    for kind, target in (("allow", 0.9), ("allow_many", 0.9), ("session_get", 0.9),
                         ("session_create", 0.9)):
        if base[kind]:
            rows.append((f"{kind} (this checkout)", med[kind], f"{kind} (baseline)",
                         statistics.median(base[kind]), target))
    if peer:
        rows.append(("RateLimiter.allow (1 per round trip)", med["allow"],
                     "limits moving window hit()", statistics.median(peer), 1.5))
    width = max(len(r[0]) for r in rows)
    for name, value, base_name, baseline, target in rows:
        ratio = value / baseline
        verdict = "ok" if ratio >= target else "below target"
        print(f"{name:<{width}}  {value:>9,.0f}/s  vs {base_name:<32} {baseline:>9,.0f}/s"
              f"  = {ratio:5.2f}x  (target >= {target}x: {verdict})")
    if not peer:
        print("limits is not installed: pip install limits for the peer-library comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Every workload runs in its own long-lived process (``PYTHONPATH`` = the
checkout's ``src``); the parent has them run ``--slices`` slices of
``--slice`` seconds each, in turn (redis-benchmark in between), and reports
the median of the slice-by-slice ratios: load from other programs that
drifts during the run hits both sides of a ratio alike. Every limiter call is
admitted (the same Lua path).

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

from _common import stack_url

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


def workload(kind: str, url: str, prefix: str, depth: int, orgs: int) -> Callable[[int], int]:
    """The step of one workload against whichever platformdb is on sys.path (this one or a
    baseline): ``step(i)`` makes some calls and says how many.

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
    return step


def serve(kind: str, url: str, prefix: str, depth: int, orgs: int) -> None:
    """A child process: set the workload up, then run one slice per "go" line on stdin."""
    step = workload(kind, url, prefix, depth, orgs)
    run_for(0.5, step)  # warm-up: connections, caches
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            return
        print(json.dumps({"rate": run_for(float(os.environ["SLICE"]), step)}), flush=True)


class Variant:
    """One workload of one checkout in its own long-lived process, run slice by slice."""

    def __init__(self, label: str, src: Path, kind: str, url: str, prefix: str,
                 opts: argparse.Namespace) -> None:
        self.label = label
        self.rates: list[float] = []
        env = {**os.environ, "PYTHONPATH": str(src), "SLICE": str(opts.slice)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--url", url, "--prefix", prefix,
             "--pipeline", str(opts.pipeline), "--orgs", str(opts.orgs)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def slice(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        rate = float(json.loads(self.proc.stdout.readline())["rate"])
        self.rates.append(rate)
        return rate

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


# --------------------------------------------------------------- the C baseline


def redis_benchmark(url: str, prefix: str, version: int, opts: argparse.Namespace, depth: int,
                    estimate: float) -> float:
    """``redis-benchmark`` sending the same FCALL for about a slice; its requests/s."""
    from platformdb.binaries import redis_tool

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


def cleanup(client: Any, patterns: list[str]) -> None:
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.unlink(*batch[i: i + 500])


def ratio(a: Variant, b: Variant) -> float:
    """The median of the slice-by-slice ratios: slices of a and b alternate, so machine
    load that drifts during the run hits both alike and cancels out."""
    return statistics.median(x / y for x, y in zip(a.rates, b.rates, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("PLATFORMDB_REDIS_URL"))
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--slices", type=int, default=15, help="measurements per variant")
    parser.add_argument("--pipeline", type=int, default=50, help="decisions per round trip")
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="the src folder of the checkout to compare with (e.g. main)")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:  # a child process
        serve(opts.serve, opts.url, opts.prefix, opts.pipeline, opts.orgs)
        return 0

    sys.path.insert(0, str(SRC))
    from platformdb.binaries import redis_tool
    from platformdb.redis import HIREDIS_AVAILABLE, connect, functions, library

    url = opts.url or stack_url("redis")
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
          f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"workload: {opts.orgs} orgs x {DSP}, 1 connection each; {opts.slices} slices of "
          f"{opts.slice}s per variant, variants interleaved; baseline: "
          f"{opts.baseline_src or '-'}\n")
    try:
        import limits  # noqa: F401

        have_limits = True
    except ImportError:
        have_limits = False

    kinds = ["allow", "allow_many", "session_get", "session_create", "bare_fcall"]
    variants: dict[str, Variant] = {}
    bench: dict[str, list[float]] = {"P1": [], "PN": []}
    try:
        for kind in kinds:
            variants[kind] = Variant(kind, SRC, kind, url, prefix, opts)
            if opts.baseline_src and kind != "bare_fcall":
                variants[f"baseline {kind}"] = Variant(f"baseline {kind}", opts.baseline_src,
                                                       kind, url, f"b{prefix}", opts)
        if have_limits:
            variants["limits"] = Variant("limits", SRC, "limits", url, prefix, opts)
        order = list(variants.values())
        for n in range(opts.slices):
            for variant in order if n % 2 == 0 else reversed(order):
                variant.slice()
            for key, depth, estimate in (("P1", 1, variants["allow"].rates[-1]),
                                         ("PN", opts.pipeline, variants["allow_many"].rates[-1])):
                opts.seconds = opts.slice
                bench[key].append(redis_benchmark(url, prefix, library().version, opts, depth,
                                                  estimate))
    finally:
        for variant in variants.values():
            variant.close()
        cleanup(client, [f"{prefix}*", f"b{prefix}*", f"*{token}*"])
    print("raw (calls/s, median and range of the slices):")
    for name, values in [*((v.label, v.rates) for v in variants.values()),
                         *((f"redis-benchmark {k}", v) for k, v in bench.items())]:
        print(f"  {name:<24} {statistics.median(values):>9,.0f}   "
              f"[{min(values):,.0f} .. {max(values):,.0f}]")
    print()
    med = {k: statistics.median(v.rates) for k, v in variants.items()}
    rows = [
        ("RateLimiter.allow (1 per round trip)", med["allow"], "redis-benchmark FCALL -P 1",
         statistics.median(bench["P1"]),
         statistics.median(a / b for a, b in zip(variants["allow"].rates, bench["P1"],
                                                 strict=True)), 0.6),
        (f"RateLimiter.allow_many (pipeline {opts.pipeline})", med["allow_many"],
         f"redis-benchmark FCALL -P {opts.pipeline}", statistics.median(bench["PN"]),
         statistics.median(a / b for a, b in zip(variants["allow_many"].rates, bench["PN"],
                                                 strict=True)), 0.6),
        ("RateLimiter.allow (direct path)", med["allow"], "bare redis-py client.fcall",
         med["bare_fcall"], ratio(variants["allow"], variants["bare_fcall"]), 1.0),
    ]
    for kind in ("allow", "allow_many", "session_get", "session_create"):
        if f"baseline {kind}" in variants:
            rows.append((f"{kind} (this checkout)", med[kind], f"{kind} (baseline)",
                         med[f"baseline {kind}"],
                         ratio(variants[kind], variants[f"baseline {kind}"]), 0.9))
    if have_limits:
        rows.append(("RateLimiter.allow (1 per round trip)", med["allow"],
                     "limits moving window hit()", med["limits"],
                     ratio(variants["allow"], variants["limits"]), 1.5))
    width = max(len(r[0]) for r in rows)
    for name, value, base_name, baseline, paired, target in rows:
        verdict = "ok" if paired >= target else "below target"
        print(f"{name:<{width}}  {value:>9,.0f}/s  vs {base_name:<32} {baseline:>9,.0f}/s"
              f"  = {paired:5.2f}x  (target >= {target}x: {verdict})")
    if not have_limits:
        print("limits is not installed: pip install limits for the peer-library comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())

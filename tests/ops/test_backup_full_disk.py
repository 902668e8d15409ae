"""A backup that fails after its folder was written (a full disk while packing the archive)
leaves nothing that looks like a backup: no folder, no archive, nothing recorded."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import redis
from platformdb import embedded

REPO = Path(__file__).resolve().parents[2]


def small_files() -> None:
    """The child can write no file beyond 8 KiB (EFBIG, as on a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))


@pytest.mark.slow
def test_an_archive_that_cannot_be_written_leaves_no_backup(cluster_dir: Path,
                                                            tmp_path: Path) -> None:
    server = embedded.EmbeddedRedis(cluster_dir / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url())
        client.set("some", "value")
        client.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
        env.update(PLATFORMDB_REDIS_URL=server.url(), PLATFORMDB_HOME=str(tmp_path / "home"))
        out = tmp_path / "backups"
        result = subprocess.run(
            [sys.executable, "-m", "platformdb.cli", "backup", "redis", "--archive",
             "--out", str(out)], env=env, cwd=REPO, capture_output=True, text=True,
            timeout=120, preexec_fn=small_files)
    finally:
        server.stop()
    assert result.returncode != 0
    assert sorted(path.name for path in out.iterdir()) == [], result.stderr

"""One process at a time: an exclusive lock on a file, held for a block.

The embedded stack's ``up``/``down`` and the record of good backups serialise
through it. (chDB's path lock, which waits a bounded time and names the
process that holds it, is the ClickHouse runtime's own.)
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder, when missing), waiting
    for another process that holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Intent journals: what a multi-step operation is about to do, written before it does it.

An operation that changes several things which must end up all-old or all-new (a
staged ``restore all``, a single-store restore; later tenant import and delete)
writes one JSON file under ``$PLATFORMDB_HOME/journal/`` *before* it changes
anything, and rewrites it at every step: its overall phase, and per part (a
store) the part's phase and the scratch names it made or will make (scratch
databases, aside copies, staging keys, scratch folders). The file is replaced
atomically (write a temporary file, ``fsync``, ``rename``, ``fsync`` the folder)
and is owner-only (0600 in a 0700 folder). When the operation ends, however it
ends, the file is removed; a file left behind means the process died mid-way,
and ``platformdb recover`` (also run by the next ``restore`` and by ``up``)
reads it to finish or roll back what was in flight (pgBackRest's restore and
PostgreSQL's WAL are the models: write what you are about to do, do it, mark it
done).

The module knows nothing of stores: what a part's record means is up to the
code that wrote it. It also holds the crash points the tests kill the process
at (``PLATFORMDB_CRASH_AT=<phase>``) and the rule that a child process (``pg_restore``,
``psql``) dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FOLDER = "journal"
CRASH_VARIABLE = "PLATFORMDB_CRASH_AT"

# the phases of an operation: before ``switching`` a recovery rolls back (nothing
# changed yet, drop the scratch); from ``switching`` on it rolls forward (every part
# was staged and verified); ``undoing`` means a failure was being rolled back
STAGING, SWITCHING, COMMITTING, UNDOING, DISCARDING = (
    "staging", "switching", "committing", "undoing", "discarding")
FORWARD_PHASES = (SWITCHING, COMMITTING)


def folder(home: Path) -> Path:
    return home / FOLDER


class Journal:
    """One operation's journal file; every change is written through at once."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def begin(cls, home: Path, operation: str, **intent: Any) -> Journal:
        """Write a new journal for ``operation`` (its ``intent``: what it means to do)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        ident = f"{operation.replace(' ', '-')}-{stamp}-{uuid.uuid4().hex[:8]}"
        data = {"id": ident, "operation": operation, "pid": os.getpid(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "phase": STAGING, "intent": intent, "parts": {}}
        journal = cls(folder(home) / f"{ident}.json", data)
        journal.write()
        return journal

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def phase(self) -> str:
        return str(self.data["phase"])

    @property
    def parts(self) -> dict[str, dict[str, Any]]:
        return dict(self.data["parts"])

    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    def set_phase(self, phase: str) -> None:
        self.data["phase"] = phase
        self.write()

    def part(self, name: str, **fields: Any) -> dict[str, Any]:
        """Update part ``name``'s record with ``fields`` (written at once); the record."""
        record = self.data["parts"].setdefault(name, {})
        record.update(fields)
        self.write()
        return dict(record)

    def write(self) -> None:
        write_atomically(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def finish(self) -> None:
        """The operation is over (done, failed cleanly, or recovered): forget it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _sync_folder(self.path.parent)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: owner-only, durable, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _sync_folder(path.parent)


def _sync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def journals(home: Path | None) -> list[Journal]:
    """Every journal under ``home`` (oldest first); unreadable files are skipped."""
    if home is None or not folder(home).is_dir():
        return []
    found = []
    for path in sorted(folder(home).glob("*.json")):
        try:
            found.append(Journal(path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def unfinished(home: Path | None) -> list[Journal]:
    """The journals whose process is gone: operations a crash interrupted."""
    return [journal for journal in journals(home) if not alive(journal.pid)]


def running(home: Path | None) -> list[Journal]:
    """The journals of operations still running (their process is alive)."""
    return [journal for journal in journals(home) if alive(journal.pid)]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (this process does)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def crash_point(phase: str) -> None:
    """Die here, as ``kill -9`` would, when ``PLATFORMDB_CRASH_AT`` names ``phase`` (tests)."""
    if os.environ.get(CRASH_VARIABLE) == phase:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def child_dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel kill the child when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``): a ``pg_restore`` must not fill a scratch database on behind
    a killed restore. None where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call: go now
            os._exit(1)

    return arm

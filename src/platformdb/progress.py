"""Long work, reported while it runs: a small protocol the library calls and a front end draws.

The library never prints. An operation that takes a while (a backup, a restore's
stages, a seed load, a tenant export, a backfill, a migration) opens a
:class:`Task` on the :class:`Progress` it was given (``Context.progress``;
:data:`NO_PROGRESS`, which shows nothing, by default), advances it by rows or
bytes when it knows them, and closes it (``with progress.task(...) as task:``).
Work that is refused opens no task, so a refused command shows nothing.

A front end subclasses :class:`Progress` and overrides :meth:`Progress.opened`,
:meth:`Progress.changed` and :meth:`Progress.closed` (the command line draws a
rich display on a terminal and one line every few seconds when piped,
``platformdb.cli.progress``). Tasks may be opened and advanced from several
threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["NO_PROGRESS", "Progress", "Task", "folder_bytes"]


class Task:
    """One piece of long work: what it is, how far it got, how much there is (when known).

    ``unit`` says what ``completed`` and ``total`` count: ``rows``, ``bytes``, ``keys``,
    ``steps``, or ``""`` (nothing countable: elapsed time only).
    """

    def __init__(self, owner: Progress, description: str, total: float | None,
                 unit: str) -> None:
        self.owner = owner
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0.0
        self.started = time.monotonic()
        self.ended: float | None = None
        self.failed = False
        self._measure: Callable[[], float] | None = None

    def advance(self, amount: float = 1) -> None:
        """``amount`` more done."""
        self.completed += amount
        self.owner.changed(self)

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        """Set how far it got, how much there is, or what it is doing now."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        self.owner.changed(self)

    def measure(self, reading: Callable[[], float]) -> None:
        """Let the front end read ``completed`` itself when it draws (the size of a folder
        being written, say), for work that cannot report as it goes (an external tool)."""
        self._measure = reading

    def poll(self) -> None:
        """Take a reading of a measured task (front ends call it before drawing); a reading
        that fails leaves the last value."""
        if self._measure is not None:
            with contextlib.suppress(OSError):
                self.completed = self._measure()

    def close(self, *, failed: bool = False) -> None:
        if self.ended is not None:
            return
        self.poll()
        self.ended = time.monotonic()
        self.failed = failed
        self.owner.closed(self)

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float | None:
        """Units per second so far (None before there is any)."""
        elapsed = self.elapsed
        return self.completed / elapsed if self.completed and elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, when the total is known."""
        rate = self.rate
        if self.total is None or not rate:
            return None
        return max(self.total - self.completed, 0) / rate

    def __enter__(self) -> Task:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc is not None)


class Progress:
    """Where long work reports itself. This base shows nothing (:data:`NO_PROGRESS`); a
    front end overrides the three hooks."""

    def task(self, description: str, *, total: float | None = None, unit: str = "") -> Task:
        """Open a task (close it, or use it as a context manager)."""
        task = Task(self, description, total, unit)
        self.opened(task)
        return task

    def callback(self, task: Task) -> Callable[[str, int, int | None], None]:
        """``task`` as a ``(what, done, total)`` callback, the form the migration engine's
        long steps (backfills, online index builds) report through."""
        def report(what: str, done: int, total: int | None) -> None:
            task.update(completed=done, total=total)

        return report

    # -- hooks for front ends --------------------------------------------------

    def opened(self, task: Task) -> None:
        """A task started."""

    def changed(self, task: Task) -> None:
        """A task advanced, or its total or description changed."""

    def closed(self, task: Task) -> None:
        """A task ended (``task.failed`` when it ended with an exception)."""


NO_PROGRESS = Progress()
"""Shows nothing: what library callers get unless they pass their own."""


def folder_bytes(folder: Path, *, besides: frozenset[str] = frozenset(),
                 only: str | None = None) -> Callable[[], float]:
    """A reading for :meth:`Task.measure`: the bytes of the files under ``folder``, leaving
    out its entries named in ``besides`` (what was there before the work began), or of its
    entry ``only``."""
    lock = threading.Lock()

    def reading() -> float:
        with lock:
            total = 0
            if not folder.is_dir():
                return 0.0
            for entry in folder.iterdir():
                if entry.name in besides or (only is not None and entry.name != only):
                    continue
                paths = [entry] if entry.is_file() else entry.rglob("*")
                for path in paths:
                    try:
                        if path.is_file():
                            total += path.stat().st_size
                    except OSError:
                        continue  # renamed or removed while we looked
            return float(total)

    return reading

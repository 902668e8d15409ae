"""How the command line draws long work (:mod:`platformdb.progress`), on stderr.

On a terminal: a rich display, one row per running task (spinner, what it is, a
bar when the total is known, rows or bytes, elapsed time, time left), gone when
the task ends (the command's own output says what was done). Piped (logs, cron,
CI): one line per running task every ``PLATFORMDB_PROGRESS_INTERVAL`` seconds (5
by default), and a last line when a task that was shown ends; work that ends
sooner prints nothing. Nothing is drawn until an operation opens a task, so a
command that is refused shows no progress at all.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from platformdb.progress import Progress, Task

DEFAULT_INTERVAL = 5.0
TERMINAL_TICK = 0.2
TERMINAL_DELAY = 0.5
"""A task shows on a terminal once it has run this long: quick steps, and work refused
right after it started, never flash by."""


def amount(value: float, unit: str) -> str:
    """``value`` of ``unit`` as a person reads it: 12.3 MB, 1,200 rows."""
    if unit == "bytes":
        scaled = float(value)
        for suffix in ("B", "kB", "MB", "GB", "TB"):
            if scaled < 1000 or suffix == "TB":
                return f"{scaled:,.0f} {suffix}" if suffix == "B" else f"{scaled:,.1f} {suffix}"
            scaled /= 1000
    if unit == "steps":
        return f"{value:,.0f}"
    return f"{value:,.0f} {unit}".rstrip()


def seconds(value: float) -> str:
    value = max(0, round(value))
    if value < 60:
        return f"{value} s"
    minutes, rest = divmod(value, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def line(task: Task) -> str:
    """One line saying how far ``task`` got (the piped form)."""
    parts: list[str] = []
    if task.unit:
        done = amount(task.completed, task.unit)
        if task.total:
            share = min(task.completed / task.total, 1) * 100
            total = amount(task.total, task.unit)
            parts.append(f"{done} of {total} ({share:.0f}%)" if task.unit != "steps"
                         else f"{done} of {total} done")
        elif task.completed or task.unit != "steps":
            parts.append(done)
        if task.rate and task.unit not in ("steps", ""):
            parts.append(f"{amount(task.rate, task.unit)}/s")
    parts.append(f"{seconds(task.elapsed)}")
    if task.eta is not None and task.ended is None:
        parts.append(f"about {seconds(task.eta)} left")
    return f"{task.description}: {', '.join(parts)}"


def ended_line(task: Task) -> str:
    done = f", {amount(task.completed, task.unit)}" if task.unit not in ("", "steps") else ""
    verb = "stopped" if task.failed else "done"
    return f"{task.description}: {verb}{done} after {seconds(task.elapsed)}"


class _Amount(ProgressColumn):
    """Rows or bytes so far (of the total, when known)."""

    def render(self, task: Any) -> Text:
        mine: Task = task.fields["task"]
        if not mine.unit:
            return Text("")
        done = amount(mine.completed, mine.unit)
        if mine.total:
            return Text(f"{done} / {amount(mine.total, mine.unit)}")
        return Text(done)


class _Left(ProgressColumn):
    """Time left, when the total is known."""

    def render(self, task: Any) -> Text:
        mine: Task = task.fields["task"]
        return Text(f"{seconds(mine.eta)} left" if mine.eta is not None else "")


class Display(Progress):
    """The command line's progress: rich rows on a terminal, timed lines when piped."""

    def __init__(self, console: Console, *, interval: float | None = None) -> None:
        self.console = console
        self.terminal = console.is_terminal
        self.interval = max(interval if interval is not None else _interval(), 0.05)
        self.lock = threading.RLock()
        self.running: dict[int, Task] = {}
        self.shown: set[int] = set()
        self.rows: dict[int, Any] = {}
        self.rich: RichProgress | None = None
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    # -- the protocol's hooks ------------------------------------------------------

    def opened(self, task: Task) -> None:
        with self.lock:
            self.running[id(task)] = task
            if self.ticker is None or self.stop.is_set() or not self.ticker.is_alive():
                self.stop = threading.Event()  # the last ticker, if still there, is leaving
                self.ticker = threading.Thread(target=self._tick, args=(self.stop,),
                                               name="progress", daemon=True)
                self.ticker.start()

    def changed(self, task: Task) -> None:
        if self.terminal:
            self._draw(task)

    def closed(self, task: Task) -> None:
        with self.lock:
            self.running.pop(id(task), None)
            if self.terminal and self.rich is not None:
                row = self.rows.pop(id(task), None)
                if row is not None:
                    self.rich.remove_task(row)
            elif id(task) in self.shown:
                self.shown.discard(id(task))
                self._print(ended_line(task))
            if not self.running:
                self.stop.set()
                if self.rich is not None:
                    self.rich.stop()
                    self.rich = None

    # -- drawing -------------------------------------------------------------------

    def _draw(self, task: Task) -> None:
        with self.lock:
            row = self.rows.get(id(task))
            if row is None and task.ended is None and task.elapsed >= TERMINAL_DELAY:
                if self.rich is None:
                    self.rich = RichProgress(
                        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        _Amount(), TimeElapsedColumn(), _Left(), console=self.console,
                        transient=True)
                    self.rich.start()
                row = self.rows[id(task)] = self.rich.add_task(
                    task.description, total=task.total, task=task)
            if self.rich is not None and row is not None:
                self.rich.update(row, description=task.description, total=task.total,
                                 completed=task.completed)

    def _tick(self, stop: threading.Event) -> None:
        """Poll measured tasks; print the lines of the piped form when they are due."""
        last_print = time.monotonic()
        while True:
            step = TERMINAL_TICK if self.terminal else min(self.interval, 0.5)
            if stop.wait(step):
                return
            with self.lock:
                tasks = list(self.running.values())
            for task in tasks:
                task.poll()
                if self.terminal:
                    self._draw(task)
            if self.terminal or time.monotonic() - last_print < self.interval:
                continue
            last_print = time.monotonic()
            with self.lock:
                for task in tasks:
                    if task.ended is None and task.elapsed >= self.interval:
                        self.shown.add(id(task))
                        self._print(line(task))

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def _interval() -> float:
    raw = os.environ.get("PLATFORMDB_PROGRESS_INTERVAL", "").strip()
    try:
        return float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL

"""The progress protocol (platformdb.progress) and how the command line draws it when piped."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from platformdb.cli.progress import Display, amount, ended_line, line
from platformdb.progress import NO_PROGRESS, Progress, Task, folder_bytes


class Recorder(Progress):
    """A front end that remembers every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def opened(self, task: Task) -> None:
        self.calls.append(("opened", task.description, task.completed))

    def changed(self, task: Task) -> None:
        self.calls.append(("changed", task.description, task.completed))

    def closed(self, task: Task) -> None:
        self.calls.append(("closed" if not task.failed else "failed", task.description,
                           task.completed))


def test_a_task_reports_opening_each_advance_and_its_end_once() -> None:
    seen = Recorder()
    with seen.task("copy", total=10, unit="rows") as task:
        task.advance(4)
        task.update(completed=7, description="copy more")
    task.close()  # closing twice is harmless
    assert seen.calls == [("opened", "copy", 0), ("changed", "copy", 4),
                          ("changed", "copy more", 7), ("closed", "copy more", 7)]


def test_a_task_left_by_an_exception_is_closed_as_failed() -> None:
    seen = Recorder()
    try:
        with seen.task("load"):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert seen.calls[-1] == ("failed", "load", 0)


def test_rate_and_time_left_follow_from_what_is_done() -> None:
    task = Task(NO_PROGRESS, "x", total=100, unit="rows")
    assert task.rate is None and task.eta is None  # nothing done yet: no guess
    task.started -= 10  # ten seconds ago
    task.advance(25)
    assert task.rate is not None and 2.4 < task.rate < 2.6
    assert task.eta is not None and 29 < task.eta < 31
    unknown = Task(NO_PROGRESS, "y", total=None, unit="bytes")
    unknown.advance(5)
    assert unknown.eta is None


def test_the_library_default_shows_nothing_and_costs_nothing() -> None:
    with NO_PROGRESS.task("anything", total=3) as task:
        task.advance()
    assert task.ended is not None


def test_a_measured_task_reads_the_bytes_written_besides_what_was_there(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b"x" * 100)
    task = Task(NO_PROGRESS, "backup", total=None, unit="bytes")
    task.measure(folder_bytes(tmp_path, besides=frozenset({"old"})))
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_bytes(b"y" * 30)
    (tmp_path / "b").write_bytes(b"z" * 12)
    task.poll()
    assert task.completed == 42
    only = Task(NO_PROGRESS, "archive", total=None, unit="bytes")
    only.measure(folder_bytes(tmp_path, only="b"))
    only.poll()
    assert only.completed == 12


def test_lines_say_what_how_far_and_how_long() -> None:
    task = Task(NO_PROGRESS, "seed load", total=1_000_000, unit="rows")
    task.started -= 4
    task.advance(250_000)
    said = line(task)
    assert said.startswith("seed load: 250,000 rows of 1,000,000 rows (25%)")
    assert "rows/s" in said and "left" in said
    task.close()
    assert ended_line(task).startswith("seed load: done, 250,000 rows after")
    assert amount(1_500_000, "bytes") == "1.5 MB" and amount(12, "bytes") == "12 B"


def piped() -> tuple[Display, io.StringIO]:
    stream = io.StringIO()
    return Display(Console(file=stream, force_terminal=False, width=200), interval=0.05), stream


def test_piped_a_long_task_prints_lines_while_it_runs_and_one_when_it_ends() -> None:
    display, stream = piped()
    with display.task("restore postgresql: staging") as task:
        time.sleep(0.2)
        task.advance(3)
        time.sleep(0.1)
    time.sleep(0.05)
    printed = stream.getvalue().splitlines()
    assert len(printed) >= 2  # at least one while it ran, and the last
    assert all(text.startswith("restore postgresql: staging: ") for text in printed)
    assert printed[-1].startswith("restore postgresql: staging: done")


def test_piped_work_that_ends_at_once_prints_nothing() -> None:
    display, stream = piped()
    for _ in range(5):  # a refused command: its task, if any, ends before the first line
        with display.task("seed load", total=100, unit="rows"):
            pass
    time.sleep(0.15)
    assert stream.getvalue() == ""


def test_tasks_from_several_threads_are_all_drawn() -> None:
    display, stream = piped()

    def work(name: str) -> None:
        with display.task(name, unit="rows") as task:
            for _ in range(6):
                task.advance(10)
                time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(f"export {n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.1)
    text = stream.getvalue()
    for n in range(3):
        assert f"export {n}: done, 60 rows" in text


@pytest.mark.slow
def test_each_migration_reports_itself_while_it_runs(pg_url: str) -> None:
    from platformdb.migrate import discover, migrations_dir
    from platformdb.ops import migrations
    from platformdb.ops.context import Context
    from platformdb.types import Endpoints

    seen = Recorder()
    migrations.up(Context(Endpoints(postgres=pg_url), progress=seen), ["postgresql"], to=3)
    opened = [what for kind, what, _ in seen.calls if kind == "opened"]
    closed = [what for kind, what, _ in seen.calls if kind == "closed"]
    labels = [m.label for m in discover(migrations_dir("postgresql"))[:3]]
    assert opened == closed == [f"postgresql: applying {label}" for label in labels]
    seen.calls.clear()
    migrations.up(Context(Endpoints(postgres=pg_url), progress=seen), ["postgresql"], to=3)
    assert seen.calls == []  # nothing to apply: nothing shown

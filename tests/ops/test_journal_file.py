"""The intent journal's file: owner-only whatever the umask, replaced atomically, and
told apart by whether its process still runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from platformdb import journal


def test_a_journal_is_owner_only_and_gone_when_finished(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        made = journal.Journal.begin(tmp_path, "restore", stores=["redis"])
        made.part("redis", phase="staged", names=["__platformdb_restore:*:ab:*"])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.path.parent.stat().st_mode) == 0o700
    written = json.loads(made.path.read_text())
    assert written["parts"]["redis"]["phase"] == "staged"
    assert written["intent"] == {"stores": ["redis"]}
    assert [path.name for path in made.path.parent.iterdir()] == [made.path.name]  # no temp
    assert journal.running(tmp_path) != [] and journal.unfinished(tmp_path) == []
    made.finish()
    assert journal.journals(tmp_path) == []


def test_a_journal_whose_process_died_is_unfinished(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    made = journal.Journal.begin(tmp_path, "restore")
    made.data["pid"] = int(child.stdout)  # a process that has exited
    made.write()
    assert [found.id for found in journal.unfinished(tmp_path)] == [made.id]
    assert journal.running(tmp_path) == []

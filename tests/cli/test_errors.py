"""One line for every failure, with the right advice and exit code; Ctrl-C says what it kept.

Every case runs the real command in a subprocess, against the real stores.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb import embedded
from platformdb.binaries import pg_tool
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, cli


@pytest.fixture
def stores_env(migrated_url: str, tmp_path: Path) -> dict[str, str]:
    """A migrated PostgreSQL database of this test, chDB in its own folder, no Redis."""
    return {"PLATFORMDB_POSTGRES_URL": migrated_url,
            "PLATFORMDB_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
            "PLATFORMDB_REDIS_URL": "redis://127.0.0.1:1/0",
            "PLATFORMDB_HOME": str(tmp_path / "home")}


def no_url_advice(result: subprocess.CompletedProcess[str]) -> None:
    assert "PLATFORMDB_" not in result.stderr and "platformdb up" not in result.stderr, (
        result.stderr)


# ------------------------------------------------------------------ bad input, missing paths


@pytest.mark.slow
def test_an_exporter_port_out_of_range_is_one_line(tmp_path: Path) -> None:
    result = cli("exporter", "--port", "99999", env={"PLATFORMDB_HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "--port 99999 is not a TCP port (1-65535)")
    assert "OverflowError" not in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_an_exporter_port_in_use_is_one_line_and_claims_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("exporter", "--port", str(port), env={
            "PLATFORMDB_HOME": str(tmp_path), "PLATFORMDB_POSTGRES_URL": "postgresql://x@h/db",
            "PLATFORMDB_REDIS_URL": "redis://h/0"})
    assert_one_line_error(result, 2, f"127.0.0.1:{port}: the port is in use")
    assert "pass --port PORT" in result.stderr
    assert "serving metrics" not in result.stdout  # it never said it served


@pytest.mark.slow
def test_a_truncated_archive_is_named_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "clickhouse-20260101T000000Z"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}" + " " * 20_000)
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(folder, arcname=folder.name)
    cut = tmp_path / "trunc.tar"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    result = cli("restore", "clickhouse", str(cut), env={"PLATFORMDB_HOME": str(tmp_path),
                                                        "PLATFORMDB_REDIS_URL": "redis://h/0",
                                                        "PLATFORMDB_POSTGRES_URL":
                                                            "postgresql://x@127.0.0.1:1/db"})
    assert_one_line_error(result, 2, f"{cut} is truncated or damaged")
    assert "ReadError" not in result.stderr


@pytest.mark.slow
def test_a_backup_into_a_folder_that_cannot_be_made_is_one_line(stores_env: dict[str, str],
                                                                 redis_url: str) -> None:
    result = cli("backup", "redis", "--out", "/proc/nope",
                 env={**stores_env, "PLATFORMDB_REDIS_URL": redis_url})
    assert_one_line_error(result, 2, "cannot create the backup folder /proc/nope")
    assert "FileNotFoundError" not in result.stderr
    no_url_advice(result)


@pytest.mark.slow
def test_a_tenant_export_into_a_missing_folder_is_one_line(stores_env: dict[str, str]) -> None:
    result = cli("tenant", "export", "test-organization", "--out", "/missing/dir/x.tar",
                 env=stores_env)
    assert_one_line_error(result, 2, "/missing/dir is not a folder")
    assert not Path("/missing").exists()


@pytest.mark.slow
def test_a_file_error_anywhere_is_its_path_and_cause_on_one_line(tmp_path: Path) -> None:
    unreadable = tmp_path / "update.sql"
    result = cli("migrate", "backfill", "x", "--file", str(unreadable),
                 env={"PLATFORMDB_POSTGRES_URL": "postgresql://x@127.0.0.1:1/db",
                      "PLATFORMDB_HOME": str(tmp_path)})
    assert_one_line_error(result, 2, f"{unreadable}: No such file or directory")


@pytest.mark.slow
def test_a_truncated_sql_dump_is_told_it_is_truncated_not_to_check_the_url(
        migrated_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "backup.sql"
    with dump.open("w") as out:
        subprocess.run([pg_tool("pg_dump", migrated_url), "-d", migrated_url], stdout=out,
                       check=True)
    text = dump.read_bytes()
    for cut_at in (len(text) // 3, len(text) // 2):
        cut = tmp_path / f"cut-{cut_at}.sql"
        cut.write_bytes(text[:cut_at])
        result = cli("restore", "postgresql", str(cut), "--force",
                     env={"PLATFORMDB_POSTGRES_URL": migrated_url,
                          "PLATFORMDB_HOME": str(tmp_path)})
        assert_one_line_error(result, 2, "truncated")
        no_url_advice(result)


@pytest.mark.slow
def test_a_backfill_of_a_missing_table_says_it_is_missing(migrated_url: str,
                                                          tmp_path: Path) -> None:
    result = cli("migrate", "backfill", "b1", "--sql", "UPDATE no_such_table SET a = 1",
                 env={"PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "table no_such_table does not exist")
    assert "primary key" not in result.stderr
    with psycopg.connect(migrated_url) as conn:  # refused before anything was recorded
        assert conn.execute("SELECT count(*) FROM platformdb.backfills WHERE name = 'b1'"
                            ).fetchone() == (0,)


@pytest.mark.slow
def test_a_refused_seed_load_prints_its_refusal_and_no_progress(stores_env: dict[str, str],
                                                                migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES"
                     " ('10ad0000-0000-4000-8000-000000000000', 'Load Org 0', 'load-0')")
    result = cli("seed", "load", "--scale", "0.001", "--no-clickhouse",
                 env={**stores_env, "PLATFORMDB_PROGRESS_INTERVAL": "0"})
    assert_one_line_error(result, 2, "a load dataset is already there; pass --replace")


# ------------------------------------------------------------------ interruptions


def start(args: list[str], env: dict[str, str], *,
          ignore_sigint: bool = False) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    base.update(env)
    base["PLATFORMDB_PROGRESS_INTERVAL"] = "0.1"

    def ignored() -> None:  # as a shell's background job starts: SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-m", "platformdb.cli", *args], env=base,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ignored if ignore_sigint else None)


def interrupt_when(process: subprocess.Popen[str], said: Callable[[str], bool]) -> str:
    """Send SIGINT to ``process`` alone once its stderr shows a line ``said`` accepts;
    everything it printed on stderr."""
    assert process.stderr is not None
    seen = []
    while True:
        text = process.stderr.readline()
        if not text:
            break
        seen.append(text)
        if said(text):
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=300)
    return "".join(seen) + rest


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def seed_stores(stores_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The stores with ClickHouse migrated (a load writes there first)."""
    result = cli("migrate", "up", "--store", "clickhouse", env=stores_env)
    assert result.returncode == 0, result.stderr
    return stores_env


@pytest.mark.parametrize("ignore_sigint", [False, True])
@pytest.mark.slow
def test_sigint_to_a_seed_load_alone_stops_it_and_says_nothing_was_loaded(
        seed_stores: dict[str, str], migrated_url: str, ignore_sigint: bool) -> None:
    process = start(["seed", "load", "--scale", "0.05"], seed_stores,
                    ignore_sigint=ignore_sigint)
    said = interrupt_when(process, lambda text: text.startswith("seed load"))
    assert process.returncode == 130, said
    last = said.strip().splitlines()[-1]
    assert last.startswith("interrupted; nothing was loaded"), said
    assert "Traceback" not in said
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (0,)


@pytest.fixture
def backup_set(stores_env: dict[str, str], redis_url: str, tmp_path: Path,
               pg_admin_url: str) -> Iterator[tuple[dict[str, str], Path]]:
    """A backup set of a small platform (PostgreSQL with the test data, ClickHouse,
    Redis in a database of its own), and the environment that restores it."""
    number = 11
    env = {**stores_env, "PLATFORMDB_REDIS_URL": redis_url.rsplit("/", 1)[0] + f"/{number}"}
    for args in (["migrate", "up"], ["seed", "test"]):
        result = cli(*args, env=env)
        assert result.returncode == 0, result.stderr
    made = cli("backup", "all", "--out", str(tmp_path / "backups"), env=env)
    assert made.returncode == 0, made.stderr
    yield env, tmp_path / "backups"
    import redis as redis_py

    redis_py.Redis.from_url(env["PLATFORMDB_REDIS_URL"]).flushdb()


@pytest.mark.slow
def test_sigint_during_a_restore_stops_its_child_program_and_restores_nothing(
        backup_set: tuple[dict[str, str], Path], migrated_url: str, pg_admin_url: str) -> None:
    env, backups = backup_set
    database = migrated_url.rsplit("/", 1)[1]
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("UPDATE organizations SET name = 'after the backup'")
    process = start(["restore", "all", str(backups), "--force"], env)
    children: list[int] = []

    def staging(text: str) -> bool:
        if "restore postgresql: staging" in text:
            children.extend(children_of(process.pid))
            return True
        return False

    said = interrupt_when(process, staging)
    assert process.returncode == 130, said
    assert said.strip().splitlines()[-1].startswith(
        "interrupted; nothing was restored: every target is as it was"), said
    deadline = time.monotonic() + 10
    while any(embedded.pid_alive(pid) and Path(f"/proc/{pid}").exists()
              and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
              for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}/cmdline").exists()
                and Path(f"/proc/{pid}/cmdline").read_bytes()], "a child program outlived us"
    with psycopg.connect(pg_admin_url) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            (f"{database[:40]}%",)).fetchall()
    assert left == [(database,)]  # no scratch copy left behind
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT DISTINCT name FROM organizations").fetchall() == [
            ("after the backup",)]


@pytest.mark.slow
def test_sigint_during_a_backfill_keeps_its_progress_to_resume(migrated_url: str,
                                                               tmp_path: Path) -> None:
    with psycopg.connect(migrated_url) as conn:
        conn.execute("CREATE TABLE t_fill (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO t_fill SELECT g, 0 FROM generate_series(1, 2000) g")
    env = {"PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_HOME": str(tmp_path)}
    process = start(["migrate", "backfill", "fill", "--sql", "UPDATE t_fill SET v = 1",
                     "--batch-size", "50", "--pause", "0.05"], env)
    said = interrupt_when(process, lambda text: re.match(r"backfill fill: [1-9][\d,]* rows",
                                                         text) is not None)
    assert process.returncode == 130, said
    assert said.strip().splitlines()[-1].startswith(
        "interrupted; backfill fill keeps its progress"), said
    with psycopg.connect(migrated_url) as conn:
        done = conn.execute("SELECT count(*) FROM t_fill WHERE v = 1").fetchone()
    assert done is not None and 0 < done[0] < 2000
    resumed = cli("migrate", "backfill", "fill", "--sql", "UPDATE t_fill SET v = 1",
                  "--batch-size", "500", env=env)
    assert resumed.returncode == 0 and "(resumed)" in resumed.stdout, resumed.stderr


def test_interruption_notes_name_what_was_kept() -> None:
    from platformdb.cli import notes
    from platformdb.errors import when_interrupted

    with pytest.raises(KeyboardInterrupt) as stopped, when_interrupted("kept A"), \
            when_interrupted(lambda: "undid B"):
        raise KeyboardInterrupt
    assert notes(stopped.value) == ["undid B", "kept A"]
    with pytest.raises(ValueError), when_interrupted("never said"):
        raise ValueError("not an interruption")


def raised_while_undoing() -> BaseException:
    from platformdb.errors import StoreUnavailable, when_interrupted

    try:
        with when_interrupted("nothing was loaded"):
            try:
                raise KeyboardInterrupt
            finally:
                raise StoreUnavailable("cannot reach ClickHouse to delete the rows")
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def test_an_interruption_whose_undo_failed_says_the_undo_failed(
        capsys: pytest.CaptureFixture[str]) -> None:
    from platformdb.cli import interrupted

    with pytest.raises(SystemExit) as stopped:
        interrupted(raised_while_undoing(), debug=False)
    assert stopped.value.code == 130
    said = capsys.readouterr().err.strip()
    assert said.startswith("interrupted; cleaning up failed: cannot reach ClickHouse")
    assert "nothing was loaded" not in said  # the note of the interruption no longer holds

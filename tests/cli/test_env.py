"""`platformdb env` and the commands that only tell: they start and create nothing, say in
one line what to run, and point the spec's client commands at the stack."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

import redis as redis_py
from platformdb import embedded
from platformdb.config import Settings
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, cli

LOOKING = [["env"], ["status"], ["health"], ["stats"], ["migrate", "status"],
           ["migrate", "plan"], ["migrate", "verify"], ["tenant", "list"]]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() \
        else []


@pytest.mark.parametrize("args", LOOKING)
@pytest.mark.slow
def test_run_from_a_folder_without_a_stack_nothing_is_created(args: list[str],
                                                              tmp_path: Path) -> None:
    elsewhere = tmp_path / "another-project"
    elsewhere.mkdir()
    result = cli(*args, cwd=elsewhere)
    assert_one_line_error(result, 2, f"no embedded stack at {elsewhere / '.platformdb'}")
    assert "run `platformdb up`" in result.stderr
    assert tree(elsewhere) == []


@pytest.mark.parametrize("args", LOOKING)
@pytest.mark.slow
def test_a_stopped_stack_stays_stopped(args: list[str], tmp_path: Path) -> None:
    home = tmp_path / "stopped"
    (home / "postgres").mkdir(parents=True)  # a stack that was up once: its folders remain
    (home / "redis").mkdir()
    before = tree(home)
    result = cli(*args, env={"PLATFORMDB_HOME": str(home)})
    if args == ["status"]:
        assert result.returncode == 0 and "stopped" in result.stdout, result.stderr
        assert tree(home) == before
        return
    assert result.returncode in (1, 2), result.stderr
    assert "platformdb up" in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert tree(home) == before  # no server started, no chDB folder, no pid file
    assert not embedded.EmbeddedPostgres(home).pid() and not embedded.EmbeddedRedis(home).pid()


def exported(stack_home: Path) -> str:
    result = cli("env", env={"PLATFORMDB_HOME": str(stack_home)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def shell(exports: str, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``command`` in a bash that ran ``eval "$(platformdb env)"``, with the machine's PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORMDB_", "PG"))}
    return subprocess.run(["bash", "-c", f'eval "$1" && {command}', "spec", exports],
                          env=env, cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_env_exports_a_passfile_never_a_password(stack_home: Path) -> None:
    exports = exported(stack_home)
    password = embedded.EmbeddedPostgres(stack_home).password
    assert password not in exports and "PGPASSWORD" not in exports
    passfile = Path(next(line.split("=", 1)[1] for line in exports.splitlines()
                         if line.startswith("export PGPASSFILE=")))
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    found = shell(exports, "psql -X -At -h localhost -U platform -d platform_dev"
                           " -c 'SELECT current_user'")
    assert found.returncode == 0 and found.stdout.strip() == "platform", found.stderr


@pytest.mark.slow
def test_redis_cli_after_env_reaches_the_stack_not_the_machine_s_redis(stack_home: Path) -> None:
    exports = exported(stack_home)
    key = f"t{uuid.uuid4().hex[:10]}:env"
    client = redis_py.Redis.from_url(embedded.EmbeddedRedis(stack_home).url())
    try:
        for tool in ("redis-cli", "valkey-cli"):
            found = shell(exports, f"{tool} PING && {tool} SET {key} {tool}")
            assert found.returncode == 0 and found.stdout.split() == ["PONG", "OK"], found.stderr
            assert client.get(key) == tool.encode()  # the stack's server got it
    finally:
        client.delete(key)
        client.close()


@pytest.mark.slow
def test_the_wrappers_hand_a_redis_password_file_to_the_cli_out_of_band(
        stack_home: Path, tmp_path: Path) -> None:
    """A stack whose Redis has a password keeps it in an owner-only file the wrappers read
    (REDISCLI_AUTH, never an argument). Here: the session's Redis, a user of the test's own."""
    home = tmp_path / "home"
    (home / "redis").mkdir(parents=True)
    (home / "redis" / "port").write_text(str(embedded.EmbeddedRedis(stack_home).port))
    user, secret = f"t{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    client = redis_py.Redis.from_url(embedded.EmbeddedRedis(stack_home).url())
    client.execute_command("ACL", "SETUSER", user, "on", f">{secret}", "+acl|whoami", "+ping")
    try:
        (home / "redis" / embedded.REDIS_USER_FILE).write_text(user)
        (home / "redis" / embedded.REDIS_PASSWORD_FILE).write_text(secret)
        folder = embedded.write_client_wrappers(home, redis_url=None)
        assert secret not in (folder / "redis-cli").read_text()
        found = subprocess.run([str(folder / "redis-cli"), "ACL", "WHOAMI"], capture_output=True,
                               text=True, timeout=60)
        assert found.returncode == 0 and found.stdout.strip() == user, found.stderr
    finally:
        client.execute_command("ACL", "DELUSER", user)
        client.close()


@pytest.mark.slow
def test_clickhouse_client_after_env_runs_the_spec_s_query(stack_home: Path) -> None:
    exports = exported(stack_home)
    found = shell(exports, 'clickhouse-client --query "SELECT 1"')
    assert found.returncode == 0 and found.stdout == "1\n", found.stderr
    piped = shell(exports, "clickhouse-client", stdin="SELECT 2, NULL")
    assert piped.returncode == 0 and piped.stdout == "2\t\\N\n", piped.stderr
    refused = shell(exports, "clickhouse-client --host elsewhere")
    assert refused.returncode == 2 and "--host is not supported here" in refused.stderr


def test_env_lines_start_nothing_and_need_a_stack(tmp_path: Path) -> None:
    from platformdb.errors import Unavailable

    with pytest.raises(Unavailable, match="no embedded stack at"):
        embedded.env_lines(Settings(home=tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    (tmp_path / "down").mkdir()
    with pytest.raises(Unavailable, match="embedded PostgreSQL is not running"):
        embedded.env_lines(Settings(home=tmp_path / "down"))
    assert tree(tmp_path / "down") == []

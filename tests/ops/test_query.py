"""`platformdb shell` and `platformdb query`: every store, embedded included, no password on a
command line."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis.client import Redis

from platformdb import embedded
from platformdb.config import Settings
from platformdb.redis import connect
from platformdb.stores.postgres.console import psql_command
from platformdb.stores.redis.console import redis_cli_command
from tests.redis.helpers import delete_prefix

REPO = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], input=stdin,
                          env={**base, **env}, cwd=REPO, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def stores_env(migrated_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    yield {"PLATFORMDB_POSTGRES_URL": migrated_url, "PLATFORMDB_REDIS_URL": redis_url,
           "PLATFORMDB_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
           "PLATFORMDB_HOME": str(tmp_path / "home"), "TEST_PREFIX": prefix}
    client = connect(redis_url)
    assert isinstance(client, Redis)
    delete_prefix(client, prefix)
    client.close()


# ------------------------------------------------------------------ query


@pytest.mark.slow
def test_query_prints_rows_of_every_store_as_csv_json_or_a_table(
        stores_env: dict[str, str]) -> None:
    sql = "SELECT 1 AS n, 'a,b' AS s, NULL AS nothing"
    pg = cli(stores_env, "query", "postgresql", sql)
    assert pg.returncode == 0, pg.stderr
    assert pg.stdout == 'n,s,nothing\n1,"a,b",\n'  # piped: CSV by default
    ch = cli(stores_env, "query", "clickhouse", "SELECT 1 AS n, 'a,b' AS s", "--format", "json")
    assert ch.returncode == 0, ch.stderr
    assert json.loads(ch.stdout) == [{"n": 1, "s": "a,b"}]
    key = f"{stores_env['TEST_PREFIX']}greeting"
    assert cli(stores_env, "query", "redis", f"SET {key} 'hello world'").stdout == "value\nOK\n"
    table = cli(stores_env, "query", "redis", f"GET {key}", "--format", "table")
    assert table.returncode == 0 and "hello world" in table.stdout and "┃ value" in table.stdout
    status = cli(stores_env, "query", "postgresql", "CREATE TEMP TABLE t (a int)",
                 "--format", "json")
    assert json.loads(status.stdout) == {"status": "CREATE TABLE"}


@pytest.mark.slow
def test_a_refused_statement_exits_1_with_the_store_s_message(stores_env: dict[str, str]) -> None:
    for store, statement in (("postgresql", "SELECT nope"), ("clickhouse", "SELECT nope"),
                             ("redis", "NOSUCHCOMMAND x")):
        result = cli(stores_env, "query", store, statement)
        assert result.returncode == 1, (store, result.stderr)
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
        assert "nope" in result.stderr.lower() or "unknown command" in result.stderr.lower()
    bad = cli(stores_env, "query", "postgresql", "SELECT 1", "--format", "xml")
    assert bad.returncode == 2 and "--format must be one of" in bad.stderr


@pytest.mark.slow
def test_query_refuses_several_statements_before_running_any(stores_env: dict[str, str],
                                                             migrated_url: str) -> None:
    import psycopg

    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (name, slug) VALUES ('Kept', 'kept')")
    for store, text in (("postgresql", "SELECT 1; DELETE FROM organizations"),
                        ("postgresql", "SELECT 'a;b'; SELECT 2 -- ;"),
                        ("clickhouse", "SELECT 1; SELECT 2")):
        result = cli(stores_env, "query", store, text)
        assert result.returncode == 2, (store, result.stderr)
        assert result.stderr.startswith("error: query runs one statement; this text holds 2")
        assert f"run `platformdb shell {store}`" in result.stderr
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (1,)
    one = cli(stores_env, "query", "postgresql", "SELECT 'a;b' AS s;  -- one statement; ")
    assert one.returncode == 0 and one.stdout == "s\na;b\n", one.stderr


@pytest.mark.slow
def test_a_missing_redis_key_prints_as_missing_not_as_empty(stores_env: dict[str, str]) -> None:
    key = f"{stores_env['TEST_PREFIX']}absent"
    empty = f"{stores_env['TEST_PREFIX']}empty"
    assert cli(stores_env, "query", "redis", f"SET {empty} ''").returncode == 0
    missing = cli(stores_env, "query", "redis", f"GET {key}")
    assert missing.returncode == 0 and missing.stdout == "(nil)\n", missing.stdout
    there = cli(stores_env, "query", "redis", f"GET {empty}")
    assert there.stdout != missing.stdout  # an empty string is not a missing key
    as_json = cli(stores_env, "query", "redis", f"GET {key}", "--format", "json")
    assert json.loads(as_json.stdout) == {"status": "(nil)"}


@pytest.mark.slow
def test_piped_backslash_commands_run_in_the_clickhouse_shell(stores_env: dict[str, str]) -> None:
    script = ("CREATE TABLE piped_t (n UInt8) ENGINE = MergeTree ORDER BY n;\n"
              "\\dt\n\\format csv\nSELECT 7 AS seven;\n\\q\nSELECT 'never';\n")
    result = cli(stores_env, "shell", "clickhouse", stdin=script)
    assert result.returncode == 0, result.stderr
    # \\dt lists the tables (it printed OK, the answer to a statement, before)
    assert "piped_t" in result.stdout and result.stdout.split().count("OK") == 1
    assert "seven\n7\n" in result.stdout and "never" not in result.stdout
    wrong = cli(stores_env, "shell", "clickhouse", stdin="\\nope\nSELECT 'never';\n")
    assert wrong.returncode == 1 and "unknown command" in wrong.stderr
    assert "never" not in wrong.stdout


# ------------------------------------------------------------------ shell


@pytest.mark.slow
def test_piped_sql_runs_in_psql_with_the_password_kept_off_the_command_line(
        stores_env: dict[str, str], migrated_url: str) -> None:
    password = urlsplit(migrated_url).password
    with psql_command(migrated_url, ["-At"]) as program:
        passfile = Path(program.env.get("PGPASSFILE", "/nonexistent"))
        if password:
            assert all(password not in arg for arg in program.args)
            assert passfile.stat().st_mode & 0o777 == 0o600
    assert not passfile.exists()  # removed when psql is done
    result = cli(stores_env, "shell", "postgresql", "--", "-At",
                 stdin="SELECT 40 + 2;\nSELECT current_database();\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["42", urlsplit(migrated_url).path.lstrip("/")]


@pytest.mark.slow
def test_piped_statements_run_in_the_clickhouse_shell_until_the_first_error(
        stores_env: dict[str, str]) -> None:
    script = ("CREATE TABLE t (n UInt8, s String) ENGINE = MergeTree ORDER BY n;\n"
              "INSERT INTO t VALUES (1, 'a;b'), (2, '--not a comment');\n"
              "SELECT n, s\n  FROM t\n ORDER BY n;  -- two lines\n"
              "SELECT nope;\nSELECT 'never';\n")
    result = cli(stores_env, "shell", "clickhouse", stdin=script)
    assert result.returncode == 1
    assert "a;b" in result.stdout and "--not a comment" in result.stdout
    assert "never" not in result.stdout
    assert "error: " in result.stderr and "nope" in result.stderr


@pytest.mark.slow
def test_the_clickhouse_prompt_in_a_terminal_reads_lines_until_a_semicolon(
        stores_env: dict[str, str]) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    env = {**base, **stores_env, "COLUMNS": "100", "TERM": "dumb"}
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "platformdb.cli", "shell", "clickhouse"],
                               stdin=child, stdout=child, stderr=child, env=env, cwd=REPO,
                               close_fds=True)
    os.close(child)
    seen = b""

    def read_until(marker: bytes, timeout: float = 120) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(main, 4096)
                except OSError:
                    break
        assert marker in seen, seen.decode(errors="replace")

    try:
        read_until(b":) ")
        os.write(main, b"SELECT 6 * 7\n")
        read_until(b":-] ")  # no semicolon yet: a continuation prompt
        os.write(main, b"  AS answer;\n")
        read_until(b"rows in set")
        os.write(main, b"\\q\n")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    assert b"answer" in seen and b"42" in seen
    history = Path(stores_env["PLATFORMDB_HOME"]) / "clickhouse_history"
    assert "SELECT 6 * 7" in history.read_text()


@pytest.mark.slow
def test_the_redis_shell_reaches_the_configured_server_with_credentials_out_of_argv(
        redis_url: str, stores_env: dict[str, str]) -> None:
    client = connect(redis_url)
    assert isinstance(client, Redis)
    prefix = stores_env["TEST_PREFIX"]
    user, password = f"{prefix.rstrip(':')}-shell", uuid.uuid4().hex
    client.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{prefix}*",
                           "+@all")
    try:
        parts = urlsplit(redis_url)
        url = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()
        program = redis_cli_command(url)
        assert all(password not in arg for arg in program.args)
        assert program.env["REDISCLI_AUTH"] == password
        result = cli({**stores_env, "PLATFORMDB_REDIS_URL": url}, "shell", "redis",
                     stdin=f"SET {prefix}k v\nGET {prefix}k\nACL WHOAMI\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["OK", "v", user]
    finally:
        client.execute_command("ACL", "DELUSER", user)
        client.close()


def test_env_puts_the_stack_s_psql_and_valkey_cli_on_path(stack_home: Path) -> None:
    lines = embedded.env_lines(Settings(home=stack_home))
    path_line = next(line for line in lines if line.startswith("export PATH="))
    folders = path_line.removeprefix("export PATH=").split(":")
    assert any((Path(folder.strip("'")) / "psql").is_file() for folder in folders)
    for tool in ("valkey-cli", "redis-cli", "clickhouse-client"):
        assert any((Path(folder.strip("'")) / tool).is_file() for folder in folders), tool
    assert any(line.startswith("export PLATFORMDB_REDIS_PORT=") for line in lines)

"""The command line: exit codes, one-line errors, the spec's verbs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from platformdb.migrate import discover, migrations_dir

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = discover(migrations_dir("postgresql"))


def cli(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], env=base,
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and text in lines[0], lines[0]


@pytest.mark.slow
def test_malformed_url_is_a_usage_error() -> None:
    result = cli("migrate", "status", env={"PLATFORMDB_POSTGRES_URL": "postgresql://h:port/db"})
    assert_one_line_error(result, 2, "PLATFORMDB_POSTGRES_URL is not a valid URL")
    result = cli("migrate", "status", env={"PLATFORMDB_POSTGRES_URL": "mysql://h/db"})
    assert_one_line_error(result, 2, "must start with one of postgres://")


@pytest.mark.slow
def test_unreachable_server_is_exit_2_with_a_hint() -> None:
    result = cli("migrate", "up", env={"PLATFORMDB_POSTGRES_URL": "postgresql://x@127.0.0.1:1/db"})
    assert_one_line_error(result, 2, "cannot connect to PostgreSQL at postgresql://x@127.0.0.1:1/db")


@pytest.mark.slow
def test_wrong_password_is_exit_2_and_masks_the_password(stack_home: Path) -> None:
    from platformdb.embedded import EmbeddedPostgres

    url = EmbeddedPostgres(stack_home).url().replace(EmbeddedPostgres(stack_home).password, "nope")
    result = cli("migrate", "status", env={"PLATFORMDB_POSTGRES_URL": url})
    assert_one_line_error(result, 2, "password authentication failed")
    assert "nope" not in result.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback_of_a_failed_command() -> None:
    result = cli("--debug", "migrate", "up",
                 env={"PLATFORMDB_POSTGRES_URL": "postgresql://x@127.0.0.1:1/db"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr


@pytest.mark.slow
def test_status_lists_every_migration_as_pending_on_an_empty_database(pg_url: str) -> None:
    result = cli("migrate", "status", "--store", "postgresql", "--json",
                 env={"PLATFORMDB_POSTGRES_URL": pg_url})
    assert result.returncode == 0, result.stderr
    import json

    rows = json.loads(result.stdout)["postgresql"]
    assert [(r["version"], r["state"]) for r in rows] == [
        (m.version, "pending") for m in MIGRATIONS]


@pytest.mark.slow
def test_up_status_verify_down_and_run_through_the_cli(pg_url: str) -> None:
    env = {"PLATFORMDB_POSTGRES_URL": pg_url}
    dry = cli("migrate", "up", "--store", "postgresql", "--dry-run", env=env)
    assert dry.returncode == 0 and "would apply 001_init_schema" in dry.stdout
    up = cli("migrate", "up", "--store", "postgresql", env=env)
    assert up.returncode == 0, up.stderr
    assert f"applied {MIGRATIONS[-1].label}" in up.stdout
    status = cli("migrate", "status", "--store", "postgresql", env=env)
    assert status.returncode == 0 and "pending" not in status.stdout
    assert cli("migrate", "verify", "--store", "postgresql", env=env).returncode == 0
    down = cli("migrate", "down", env=env)
    assert down.returncode == 0 and f"reverted {MIGRATIONS[-1].label}" in down.stdout
    again = cli("migrate", "run", f"{MIGRATIONS[-1].version:03d}", env=env)
    assert again.returncode == 0 and f"applied {MIGRATIONS[-1].label}" in again.stdout


@pytest.mark.slow
def test_unknown_number_and_empty_down_are_usage_errors(pg_url: str) -> None:
    env = {"PLATFORMDB_POSTGRES_URL": pg_url}
    assert_one_line_error(cli("migrate", "run", "999", env=env), 2, "no migration numbered 999")
    assert_one_line_error(cli("migrate", "down", env=env), 2, "nothing to roll back")
    assert_one_line_error(cli("migrate", "up", "--store", "oracle", env=env), 2,
                          "unknown store 'oracle'")


@pytest.mark.slow
def test_verify_exits_1_when_an_applied_migration_changed(pg_url: str) -> None:
    env = {"PLATFORMDB_POSTGRES_URL": pg_url}
    assert cli("migrate", "up", "--store", "postgresql", "--to", "1", env=env).returncode == 0
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE platformdb.schema_migrations SET checksum = repeat('0', 64)")
    result = cli("migrate", "verify", "--store", "postgresql", env=env)
    assert_one_line_error(result, 1, "was edited after it was applied")
    refused = cli("migrate", "up", "--store", "postgresql", env=env)
    assert_one_line_error(refused, 2, "was edited after it was applied")


@pytest.mark.slow
def test_env_exports_let_psql_list_the_twelve_tables(migrated_url: str) -> None:
    result = cli("env", env={"PLATFORMDB_POSTGRES_URL": migrated_url,
                             "PLATFORMDB_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 0, result.stderr
    assert "export PGDATABASE=" in result.stdout
    script = result.stdout + "\npsql -X -At -c '\\dt' | cut -d'|' -f2\n"
    listed = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"]}, timeout=60)
    if listed.returncode != 0 and "not found" in listed.stderr:
        pytest.fail("psql is not on PATH and the embedded binaries were not exported")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted([
        "organizations", "users", "user_roles", "permissions", "role_permissions", "auth_tokens",
        "dsp_connectors", "campaigns", "campaign_metrics", "etl_jobs", "notifications",
        "audit_logs"])


def test_new_creates_the_next_numbered_pair(tmp_path: Path) -> None:
    from platformdb.migrate import new_migration

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_a.sql").write_text("SELECT 1;")
    up, down = new_migration("postgresql", "add reports", directory=folder)
    assert (up.name, down.name) == ("002_add_reports.sql", "002_add_reports.down.sql")
    assert up.read_text().startswith("-- 002_add_reports: say here WHY")


@pytest.mark.parametrize("case, code", [("pass", 0), ("fail", 1)])
@pytest.mark.slow
def test_lint_format_json_reports_findings_for_tools(case: str, code: int) -> None:
    import json

    root = REPO / "tests" / "lint" / "fixtures" / "injection" / case
    result = cli("lint", "--root", str(root), "--check", "injection", "--format", "json")
    assert result.returncode == code, result.stderr
    document = json.loads(result.stdout)
    assert bool(document["findings"]) == (case == "fail")
    assert all(f["rule"] and f["path"] and f["line"] for f in document["findings"])


@pytest.mark.slow
def test_lint_refuses_an_unknown_format() -> None:
    result = cli("lint", "--format", "xml")
    assert result.returncode == 2 and "--format must be text or json" in result.stderr


# ------------------------------------------------------------------ habits


def all_commands() -> list[list[str]]:
    """Every command path of the CLI (``[]`` is the root)."""
    import typer.main

    from platformdb.cli import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return paths


@pytest.mark.slow
def test_version_prints_the_version_and_exits_0() -> None:
    from platformdb import __version__

    for flag in ("--version", "-V"):
        result = cli(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"platformdb {__version__}"


@pytest.mark.slow
def test_help_of_every_command_shows_no_type_placeholders() -> None:
    from typer.testing import CliRunner

    from platformdb.cli import app

    runner = CliRunner()
    for path in all_commands():
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        for placeholder in ("<bool>", "<int>", "<str>", "<float>", "<list", "<path>"):
            assert placeholder not in result.output, (path, result.output)


@pytest.mark.slow
def test_shell_completion_completes_commands() -> None:
    env = {"_PLATFORMDB_COMPLETE": "complete_bash", "COMP_WORDS": "platformdb mig",
           "COMP_CWORD": "1"}
    script = Path(sys.executable).with_name("platformdb")  # completion keys on the program name
    result = subprocess.run([str(script)], env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "migrate" in result.stdout.split()


@pytest.mark.parametrize("args", [
    ["health", "--store", "mongo"],
    ["stats", "--store", "mongo"],
    ["migrate", "status", "--store", "mongo"],
    ["migrate", "up", "--store", "mongo"],
    ["backup", "mongo"],
    ["restore", "mongo", "backups"],
])
@pytest.mark.slow
def test_an_unknown_store_is_a_usage_error_everywhere(args: list[str]) -> None:
    assert_one_line_error(cli(*args), 2, "unknown store 'mongo'")


@pytest.mark.slow
def test_a_refused_connection_keeps_its_cause_on_one_line() -> None:
    result = cli("migrate", "status", env={"PLATFORMDB_POSTGRES_URL":
                                           "postgresql://x:pw@127.0.0.1:1/db"})
    assert_one_line_error(result, 2, "Connection refused")


@pytest.mark.slow
def test_debug_adds_a_traceback_and_keeps_the_exit_code() -> None:
    env = {"PLATFORMDB_POSTGRES_URL": "postgresql://x:hunter22@127.0.0.1:1/db"}
    plain = cli("migrate", "up", env=env)
    debug = cli("--debug", "migrate", "up", env=env)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


@pytest.mark.slow
def test_piped_output_is_never_cut(tmp_path: Path) -> None:
    long_host = "a-rather-long-host-name-that-does-not-exist." + "x" * 60 + ".invalid"
    env = {"PLATFORMDB_REDIS_URL": f"redis://:pw@{long_host}:6390/0",
           "PLATFORMDB_HOME": str(tmp_path)}
    result = cli("health", "--store", "redis", env=env)
    assert result.returncode == 1
    assert long_host in result.stdout
    assert "…" not in result.stdout
    assert ":pw@" not in result.stdout + result.stderr


@pytest.mark.parametrize("args", [["migrate", "status"], ["migrate", "verify"], ["stats"],
                                  ["migrate", "status", "--store", "redis"]])
@pytest.mark.slow
def test_inspection_commands_never_start_a_stopped_stack(args: list[str], tmp_path: Path) -> None:
    home = tmp_path / "stopped"
    home.mkdir()
    result = cli(*args, env={"PLATFORMDB_HOME": str(home)})
    assert sorted(p.name for p in home.iterdir()) == []
    if args[0] == "stats":
        assert_one_line_error(result, 1, "embedded Redis is not running")
        assert "run `platformdb up`" in result.stderr
        return
    assert_one_line_error(result, 2, "is not running; start it with `platformdb up`")


@pytest.mark.slow
def test_a_database_without_the_schema_says_to_migrate(pg_url: str, tmp_path: Path) -> None:
    result = cli("tenant", "list", env={"PLATFORMDB_POSTGRES_URL": pg_url,
                                        "PLATFORMDB_HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "is not migrated; run `platformdb migrate up`")

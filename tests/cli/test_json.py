"""Every command that has --json prints valid JSON, on a platform of the test's own.

The commands run in an order that gives each one something to report (migrate, seed,
sync, back up, restore, export, delete, import...). A command that gains --json without
a case here fails the walk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

import redis as redis_py
from platformdb import embedded
from platformdb.cli import app
from platformdb.migrate import discover, migrations_dir
from platformdb.ops.seed import DEV_SECRET_KEYS
from tests.conftest import (
    REPO,
    create_database,
    drop_database,
    embedded_admin_url,
    fresh_name,
    migrated_database,
)

REDIS_DATABASE = 12
"""A Redis database of this test's own (flushed at the end)."""


def json_commands() -> set[str]:
    """Every command path of the CLI that takes --json."""
    found: set[str] = set()

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", {})
        if not subcommands and any("--json" in getattr(p, "opts", [])
                                   for p in getattr(command, "params", [])):
            found.add(" ".join(path))
        for name, sub in subcommands.items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


@pytest.fixture
def platform(stack_home: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The embedded stack only: what a command prints does not depend on the server (the
    commands themselves are tested against every target elsewhere)."""
    admin = embedded_admin_url(stack_home)
    names = [fresh_name(), fresh_name()]  # "t_...": what seed clear and tenant delete allow
    migrated, empty = migrated_database(admin, names[0]), create_database(admin, names[1])
    env = {"PLATFORMDB_POSTGRES_URL": migrated,
           "PLATFORMDB_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
           "PLATFORMDB_REDIS_URL": embedded.EmbeddedRedis(stack_home).url().rsplit("/", 1)[0]
           + f"/{REDIS_DATABASE}",
           "PLATFORMDB_HOME": str(tmp_path / "home"),
           "PLATFORMDB_SECRET_KEYS": DEV_SECRET_KEYS, "empty": empty}
    (tmp_path / "home").mkdir()
    yield env
    redis_py.Redis.from_url(env["PLATFORMDB_REDIS_URL"]).flushdb()
    for name in names:
        drop_database(admin, name)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    return subprocess.run([sys.executable, "-m", "platformdb.cli", *args], env={**base, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_json_command_prints_valid_json(platform: dict[str, str],
                                              stack_home: Path, tmp_path: Path) -> None:
    last = discover(migrations_dir("postgresql"))[-1].version
    empty = platform.pop("empty")  # a database without the schema, for baseline
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    backups, archive = tmp_path / "backups", tmp_path / "acme.tar"
    lint_root = REPO / "tests" / "lint" / "fixtures" / "injection" / "pass"
    stack = {"PLATFORMDB_HOME": str(stack_home)}  # up, status, logins: the session's stack
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("up", ["up"], stack),
        ("status", ["status"], stack),
        ("down", ["down"], {"PLATFORMDB_HOME": str(tmp_path / "no-stack-here")}),
        ("migrate up", ["migrate", "up"], {}),
        ("migrate status", ["migrate", "status"], {}),
        ("migrate plan", ["migrate", "plan"], {}),
        ("migrate verify", ["migrate", "verify"], {}),
        ("migrate down", ["migrate", "down"], {}),
        ("migrate run", ["migrate", "run", f"{last:03d}"], {}),
        ("migrate baseline", ["migrate", "baseline"], {"PLATFORMDB_POSTGRES_URL": empty}),
        ("seed test", ["seed", "test"], {}),
        ("seed demo", ["seed", "demo"], {}),
        ("seed load", ["seed", "load", "--scale", "0.001"], {}),
        ("etl sync-daily", ["etl", "sync-daily", "--from", str(day - dt.timedelta(days=3)),
                            "--to", str(day)], {}),
        ("migrate backfill", ["migrate", "backfill", "j1", "--sql",
                              "UPDATE campaigns SET name = name"], {}),
        ("health", ["health"], {}),
        ("stats", ["stats"], {}),
        ("partitions ensure", ["partitions", "ensure"], {}),
        ("retention apply", ["retention", "apply", "--dry-run"], {}),
        ("secrets rotate", ["secrets", "rotate", "--dry-run"], {}),
        ("backup", ["backup", "all", "--out", str(backups)], {}),
        ("backup", ["backup", "verify", "--out", str(backups)], {}),  # the restore drill
        ("restore", ["restore", "all", str(backups), "--force"], {}),
        ("recover", ["recover", "--cleanup"], {}),
        ("tenant list", ["tenant", "list"], {}),
        ("tenant show", ["tenant", "show", "acme-retail"], {}),
        ("tenant keys show", ["tenant", "keys", "show"], {}),
        ("tenant keys rotate", ["tenant", "keys", "rotate"], {}),
        ("tenant export", ["tenant", "export", "acme-retail", "--out", str(archive)], {}),
        ("tenant delete", ["tenant", "delete", "acme-retail", "--yes"], {}),
        ("tenant import", ["tenant", "import", str(archive)], {}),
        ("seed clear", ["seed", "clear"], {}),
        ("pgbouncer logins", ["pgbouncer", "logins"], stack),
        ("lint", ["lint", "--root", str(lint_root), "--check", "injection"], {}),
    ]
    assert {name for name, _, _ in cases} == json_commands()
    for name, args, env in cases:
        result = run({**platform, **env}, *args, "--json")
        assert result.returncode in (0, 1), (name, result.stderr)
        try:
            json.loads(result.stdout)
        except ValueError as exc:
            pytest.fail(f"{name} --json printed no JSON ({exc}): {result.stdout[:500]!r}"
                        f" {result.stderr[-500:]!r}")
        if name == "migrate baseline":  # an empty database differs: the list, then exit 1
            assert result.returncode == 1 and json.loads(result.stdout)["ok"] is False
        elif name not in ("stats", "health"):
            assert result.returncode == 0, (name, result.stderr)

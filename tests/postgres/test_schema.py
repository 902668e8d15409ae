"""The PostgreSQL schema as a whole: migrations, psql compatibility, SQL tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from platformdb.binaries import pg_tool
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres.driver import PostgresDriver, dump_schema

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = discover(migrations_dir("postgresql"))
SQL_TESTS = sorted((REPO / "postgresql" / "tests").glob("*.sql"))
TABLES = {
    "organizations", "users", "user_roles", "permissions", "role_permissions", "auth_tokens",
    "dsp_connectors", "campaigns", "campaign_metrics", "etl_jobs", "notifications", "audit_logs",
}


def psql(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
                          capture_output=True, text=True, timeout=300)


def test_the_twelve_tables_exist_in_public(migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')").fetchall()
    assert {r[0] for r in rows} == TABLES


@pytest.mark.slow
def test_down_to_zero_and_up_again_gives_an_identical_schema(pg_url: str) -> None:
    driver = PostgresDriver(pg_url)
    try:
        migrator = Migrator(driver, MIGRATIONS)
        migrator.up()
        first = dump_schema(pg_url)
        for _ in MIGRATIONS:
            migrator.down()
        with psycopg.connect(pg_url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('public', 'partitions') AND c.relkind IN ('r','p','v','i')"
            ).fetchone()
            assert left == (0,)
            assert conn.execute("SELECT to_regnamespace('partitions')").fetchone() == (None,)
        migrator.up()
        assert dump_schema(pg_url) == first
    finally:
        driver.close()


@pytest.mark.slow
def test_every_migration_runs_with_plain_psql_twice(pg_url: str) -> None:
    for _ in range(2):
        for migration in MIGRATIONS:
            result = psql(pg_url, "-f", str(migration.path))
            assert result.returncode == 0, f"{migration.path.name}: {result.stderr}"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM permissions").fetchone()[0] > 0  # type: ignore[index]


@pytest.mark.slow
def test_migrations_applied_by_psql_match_the_engine(pg_url: str, migrated_url: str) -> None:
    for migration in MIGRATIONS:
        assert psql(pg_url, "-1", "-f", str(migration.path)).returncode == 0
    assert dump_schema(pg_url) == dump_schema(migrated_url)


@pytest.mark.parametrize("path", SQL_TESTS, ids=[p.name for p in SQL_TESTS])
@pytest.mark.slow
def test_sql_test_passes_under_psql(migrated_url: str, path: Path) -> None:
    result = psql(migrated_url, "-f", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_sql_tests_fail_loudly(migrated_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text("BEGIN;\nDO $$ BEGIN ASSERT 1 = 2, 'expected failure'; END $$;\nROLLBACK;\n")
    result = psql(migrated_url, "-f", str(broken))
    assert result.returncode != 0 and "expected failure" in result.stderr


def test_there_are_sql_tests_for_the_spec_areas() -> None:
    names = {p.name for p in SQL_TESTS}
    assert "test_users.sql" in names
    assert len(names) >= 4


def test_reference_function_and_view_files_match_the_migrations() -> None:
    """postgresql/{functions,views}/*.sql are copies; each must appear verbatim in a migration."""
    def normalise(text: str) -> str:
        code = (line for line in text.splitlines() if not line.lstrip().startswith("--"))
        return " ".join(" ".join(code).split())

    migrations = normalise("\n".join(m.sql for m in MIGRATIONS))
    files = sorted((REPO / "postgresql" / "functions").glob("*.sql"))
    assert files, "postgresql/functions/ is empty"
    files += sorted((REPO / "postgresql" / "views").glob("*.sql"))
    for path in files:
        assert normalise(path.read_text()) in migrations, f"{path.name} differs from the migration"

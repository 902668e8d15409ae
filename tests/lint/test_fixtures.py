"""Each check fails on its failing fixture, exactly where expected, and passes its passing one.

Fixtures are small trees under ``tests/lint/fixtures/<check>/{pass,fail}``
with the repository's layout (``postgresql/migrations``, ``clickhouse/``,
``redis/scripts``, ``src/``); none lives under the real ``postgresql/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from platformdb.lint import CHECKS, blocking, run_lint

FIXTURES = Path(__file__).parent / "fixtures"

EXPECTED: dict[str, set[tuple[str, int, str]]] = {
    "postgres-syntax": {
        ("postgresql/migrations/001_init.sql", 4, "pg-syntax"),
        ("postgresql/functions/broken_body.sql", 2, "pg-syntax"),
        ("postgresql/tests/test_meta.sql", 4, "pg-syntax"),
        ("postgresql/migrations/002_psql_only.sql", 2, "migration-psql-command"),
        ("postgresql/migrations/002_psql_only.sql", 3, "migration-transaction-control"),
        ("postgresql/migrations/002_psql_only.sql", 5, "migration-transaction-control"),
    },
    "clickhouse-syntax": {
        ("clickhouse/tables/events.sql", 9, "ch-syntax"),
    },
    "migration-safety": {
        ("postgresql/migrations/001_init.sql", 5, "prefer-bigint-over-int"),
        ("postgresql/migrations/002_live_changes.sql", 2, "require-concurrent-index-creation"),
        ("postgresql/migrations/002_live_changes.sql", 3, "adding-field-with-default"),
        ("postgresql/migrations/002_live_changes.sql", 4, "changing-column-type"),
        ("postgresql/migrations/002_live_changes.sql", 5, "waiver-without-reason"),
        ("postgresql/migrations/002_live_changes.sql", 6, "adding-not-nullable-field"),
    },
    "injection": {
        ("postgresql/functions/create_partition.sql", 7, "sql-injection"),
        ("postgresql/functions/create_partition.sql", 9, "sql-injection"),
        ("redis/scripts/touch.lua", 5, "lua-key-from-argv"),
        ("redis/scripts/touch.lua", 6, "lua-key-from-argv"),
    },
    "migration-order": {
        ("clickhouse/migrations", 0, "migration-gap"),
        ("postgresql/migrations", 0, "migration-gap"),
        ("postgresql/migrations/003_create_b.sql", 1, "migration-no-down"),
        ("postgresql/migrations/003_create_c.sql", 1, "migration-duplicate"),
        ("postgresql/migrations/004_create_d.sql", 1, "migration-directive"),
        ("postgresql/migrations/005_gone.down.sql", 1, "migration-orphan-down"),
        ("postgresql/migrations/006_Add_Things.sql", 1, "migration-name"),
    },
    "conventions": {
        ("postgresql/migrations/001_init.sql", 2, "tenant-policy"),
        ("postgresql/migrations/001_init.sql", 2, "tenant-rls"),
        ("postgresql/migrations/001_init.sql", 7, "tenant-key"),
        ("postgresql/migrations/001_init.sql", 7, "tenant-org-id"),
        ("postgresql/migrations/001_init.sql", 7, "tenant-org-index"),
        ("postgresql/migrations/001_init.sql", 7, "tenant-policy"),
        ("postgresql/migrations/001_init.sql", 7, "tenant-rls"),
        ("postgresql/migrations/001_init.sql", 9, "fk-index"),
        ("postgresql/migrations/001_init.sql", 15, "fk-index"),
        ("postgresql/migrations/001_init.sql", 15, "tenant-fk"),
    },
    "security": {
        ("postgresql/functions/helpers.sql", 2, "definer-search-path"),
        ("postgresql/migrations/001_init.sql", 7, "partition-rls"),
        ("postgresql/migrations/001_init.sql", 9, "partition-rls"),
        ("postgresql/migrations/001_init.sql", 12, "definer-search-path"),
        ("postgresql/migrations/001_init.sql", 13, "definer-search-path"),
        ("postgresql/migrations/001_init.sql", 15, "definer-search-path"),
        ("postgresql/migrations/001_init.sql", 19, "definer-search-path"),
        ("postgresql/migrations/001_init.sql", 21, "secret-grant"),
        ("postgresql/migrations/001_init.sql", 22, "secret-grant"),
        ("postgresql/migrations/001_init.sql", 23, "secret-grant"),
        ("postgresql/migrations/001_init.sql", 24, "secret-grant"),
        ("postgresql/migrations/001_init.sql", 25, "secret-grant"),
        ("postgresql/migrations/001_init.sql", 26, "secret-grant"),
    },
}


def test_every_check_has_fixtures() -> None:
    assert set(EXPECTED) == set(CHECKS)
    for check in CHECKS:
        assert (FIXTURES / check / "pass").is_dir() and (FIXTURES / check / "fail").is_dir()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_check_passes_its_passing_fixture(check: str) -> None:
    findings = run_lint(FIXTURES / check / "pass", rules=[check])
    assert blocking(findings) == []


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_check_reports_each_problem_of_its_failing_fixture(check: str) -> None:
    findings = blocking(run_lint(FIXTURES / check / "fail", rules=[check]))
    assert {(f.path, f.line, f.rule) for f in findings} == EXPECTED[check]
    assert all(f.message for f in findings)


def test_the_security_check_finds_what_main_left_open_in_001() -> None:
    """Run over 001-003 alone (no later migration fixing them), it names each breach."""
    import shutil
    import tempfile

    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "postgresql" / "migrations"
        target.mkdir(parents=True)
        for path in sorted((repo / "postgresql" / "migrations").glob("00[123]_*.sql")):
            shutil.copy(path, target / path.name)
        found = {(f.rule, f.message.split(":")[0].split(" ")[0])
                 for f in run_lint(Path(tmp), rules=["security"])}
    assert found == {
        ("definer-search-path", "public.audit_row_change"),
        ("definer-search-path", "public.validate_auth_token"),
        ("partition-rls", "partitions.campaign_metrics_default,"),
        ("partition-rls", "partitions.audit_logs_default,"),
        ("secret-grant", "platform_app"), ("secret-grant", "platform_readonly"),
        ("secret-grant", "platform_etl"),
    }

"""Migration settings: durations, PLATFORMDB_MIGRATE_* values, the backoff between attempts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platformdb.errors import ConfigError
from platformdb.migrate.options import MigrateOptions, parse_duration
from platformdb.migrate.retry import pause
from tests.test_cli import assert_one_line_error, cli


def test_durations_take_units_and_bare_seconds() -> None:
    assert parse_duration("2s") == 2000
    assert parse_duration("500ms") == 500
    assert parse_duration("1.5min") == 90_000
    assert parse_duration("1h") == 3_600_000
    assert parse_duration("3") == 3000
    assert parse_duration(0.25) == 250
    with pytest.raises(ConfigError, match="duration like 2s"):
        parse_duration("soon")


def test_settings_come_from_the_environment_and_unknown_ones_are_refused() -> None:
    options = MigrateOptions.from_env({
        "PLATFORMDB_MIGRATE_LOCK_TIMEOUT": "750ms", "PLATFORMDB_MIGRATE_LOCK_RETRIES": "3",
        "PLATFORMDB_MIGRATE_RETRY_BUDGET": "1min", "PLATFORMDB_MIGRATE_RUNNER_WAIT": "30s",
        "PLATFORMDB_MIGRATE_STATEMENT_TIMEOUT": "2min"})
    assert (options.lock_timeout, options.attempts, options.retry_budget_s,
            options.runner_wait_s, options.statement_timeout) == ("750ms", 4, 60, 30,
                                                                  "120000ms")
    assert MigrateOptions.from_env({}) == MigrateOptions()
    with pytest.raises(ConfigError, match="unknown setting PLATFORMDB_MIGRATE_LOCK_TIMOUT"):
        MigrateOptions.from_env({"PLATFORMDB_MIGRATE_LOCK_TIMOUT": "1s"})
    with pytest.raises(ConfigError, match="whole number"):
        MigrateOptions.from_env({"PLATFORMDB_MIGRATE_LOCK_RETRIES": "many"})
    with pytest.raises(ConfigError, match="at least 1ms"):
        MigrateOptions(lock_timeout_ms=0)


@pytest.mark.slow
def test_a_bad_setting_is_a_one_line_usage_error(pg_url: str) -> None:
    result = cli("migrate", "up", "--store", "postgresql",
                 env={"PLATFORMDB_POSTGRES_URL": pg_url,
                      "PLATFORMDB_MIGRATE_LOCK_TIMEOUT": "a while"})
    assert_one_line_error(result, 2, "PLATFORMDB_MIGRATE_LOCK_TIMEOUT must be a duration")
    result = cli("migrate", "up", "--store", "postgresql", "--lock-timeout", "x",
                 env={"PLATFORMDB_POSTGRES_URL": pg_url})
    assert_one_line_error(result, 2, "--lock-timeout must be a duration")


@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers(0, 2**32))
def test_pauses_grow_are_capped_and_never_near_zero(attempt: int, seed: int) -> None:
    options = MigrateOptions()
    ceiling = min(options.backoff_cap_s, options.backoff_base_s * 2 ** (attempt - 1))
    value = pause(attempt, options, random.Random(seed))
    assert ceiling / 2 <= value <= ceiling

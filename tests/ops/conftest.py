"""The ClickHouse fixtures of tests/clickhouse/, for the commands that move data between
the stores (etl sync-daily)."""

from tests.clickhouse.conftest import (  # noqa: F401 - fixtures
    ch,
    ch_empty,
    ch_target,
    ch_url,
    pg,
    pg_template,
)

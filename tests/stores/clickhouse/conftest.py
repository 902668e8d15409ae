"""The ClickHouse fixtures of tests/clickhouse/ (a database per test, chDB or a server)."""

from tests.clickhouse.conftest import (  # noqa: F401 - fixtures
    ch,
    ch_empty,
    ch_target,
    ch_url,
    pg,
    pg_template,
)

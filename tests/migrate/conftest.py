"""Fixtures of the migration tests: the ClickHouse ones (one migrated database per test,
and the PostgreSQL its dictionaries read), and a migrated PostgreSQL copy with its
database grants."""

import psycopg
import pytest

from platformdb.migrate import migrations_dir
from tests.clickhouse.conftest import (  # noqa: F401 -- fixtures, found by name
    ch,
    ch_empty,
    ch_target,
    ch_url,
    pg,
    pg_template,
)

DATABASE_GRANTS = """
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(),
                   current_user);
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO platform_app, platform_readonly,'
                   ' platform_etl, platform_auth, platform_connector, platform_dictionary',
                   current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO platform_etl', current_database());
END
$$;
"""
"""The database-level grants of 005, as 005 writes them."""


@pytest.fixture
def migrated_copy(migrated_url: str) -> str:
    """``migrated_url`` with the database's own grants (005) back.

    CREATE DATABASE ... TEMPLATE copies schemas, not the database's ACL: a copy has
    PUBLIC's default CONNECT and none of 005's database grants, which ``verify --drift``
    rightly reports.
    """
    assert "GRANT TEMPORARY ON DATABASE %I TO platform_etl" in (
        migrations_dir("postgresql") / "005_least_privilege.sql").read_text()
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(DATABASE_GRANTS)
    return migrated_url

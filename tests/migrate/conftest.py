"""Fixtures of the migration tests: the ClickHouse ones (one migrated database per test,
and the PostgreSQL its dictionaries read), and a migrated PostgreSQL copy with its
database grants."""

import psycopg
import pytest

from platformdb.stores.postgres.backup import apply_database_acl, database_acl
from tests.clickhouse.conftest import (  # noqa: F401 -- fixtures, found by name
    ch,
    ch_empty,
    ch_target,
    ch_url,
    pg,
    pg_template,
)


@pytest.fixture
def migrated_copy(migrated_url: str, migrated_template: str) -> str:
    """``migrated_url`` with the database's own grants (005) back.

    CREATE DATABASE ... TEMPLATE copies schemas, not the database's ACL: a copy has
    PUBLIC's default CONNECT and none of 005's database grants, which ``verify --drift``
    rightly reports. The template's grants are the migrations' own: copy those.
    """
    template = migrated_url.rsplit("/", 1)[0] + f"/{migrated_template}"
    with psycopg.connect(template) as conn:
        acl = database_acl(conn)
    assert ["platform_etl", "TEMPORARY"] in acl  # 005 ran on the template
    apply_database_acl(migrated_url, acl)
    return migrated_url

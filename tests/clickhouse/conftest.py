"""ClickHouse fixtures: one migrated database per test, through the one client factory.

chDB (the default) opens one path per process, so every test of the session
uses one chDB path under the stack home and gets its own *database* in it.
With ``PLATFORMDB_TEST_CLICKHOUSE_URL`` the same tests also run on that
server, again one database per test: both go through
:func:`platformdb.clickhouse.connect` and clickhouse-connect's ``Client``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse import connect, with_database
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.clickhouse.ddl import Topology
from platformdb.stores.clickhouse.dictionaries import collection_name, provision_login
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders

CH_TARGETS = ["chdb"] + (["server"] if os.environ.get("PLATFORMDB_TEST_CLICKHOUSE_URL") else [])
MIGRATIONS = discover(migrations_dir("clickhouse"))


def chdb_url(home: Path, database: str) -> str:
    return f"chdb://{home / 'test-clickhouse'}?database={database}"


def url_for(target: str, home: Path, database: str) -> str:
    if target == "server":
        return with_database(os.environ["PLATFORMDB_TEST_CLICKHOUSE_URL"], database)
    return chdb_url(home, database)


@pytest.fixture(params=CH_TARGETS)
def ch_target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ch_url(ch_target: str, stack_home: Path) -> str:
    """A URL to a database of this test's own (created on first connect)."""
    return url_for(ch_target, stack_home, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def ch_empty(ch_url: str) -> Iterator[Client]:
    """An empty database of its own."""
    with connect(ch_url) as client:
        try:
            yield client
        finally:
            client.command(f"DROP DATABASE IF EXISTS {client.database} SYNC")
            client.command(f"DROP NAMED COLLECTION IF EXISTS "
                           f"{collection_name(str(client.database))}")


NO_DICTIONARY_SOURCE = {"pg_host": "127.0.0.1", "pg_port": "1", "pg_user": "nobody",
                        "pg_password": "", "pg_db": "none", "dictionary_source": "none"}
SECRET: list[Path] = []


def driver_for(client: Client, pg_url: str | None,
               topology: Topology | None = None) -> ClickHouseDriver:
    """A driver whose dictionaries read ``pg_url`` as the least-privilege login."""
    if pg_url is None:
        return ClickHouseDriver(client, NO_DICTIONARY_SOURCE, topology)
    login = provision_login(pg_url, SECRET[0])
    return ClickHouseDriver(client, lambda: dictionary_placeholders(client, login, topology),
                            topology)


# What the PostgreSQL stream's migration creates (issue 14.10), until it is on main: a NOLOGIN
# role that reads exactly two views across tenants. Applied only where they are missing.
DICTIONARY_SQL = """
DO $$ BEGIN
    CREATE ROLE platform_dictionary NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
CREATE VIEW public.dictionary_organizations AS
    SELECT id, name, slug, status FROM public.organizations;
CREATE VIEW public.dictionary_campaigns AS
    SELECT org_id, id, name, status, currency FROM public.campaigns;
REVOKE ALL ON public.dictionary_organizations, public.dictionary_campaigns FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO platform_dictionary;
GRANT SELECT ON public.dictionary_organizations, public.dictionary_campaigns
    TO platform_dictionary;
"""


def add_dictionary_views(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('public.dictionary_campaigns')").fetchone()
        if found is None or found[0] is None:
            conn.execute(DICTIONARY_SQL)


@pytest.fixture(scope="session")
def pg_template(stack_home: Path) -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL template on the embedded server (ClickHouse tests need one PG)."""
    from platformdb import embedded
    from platformdb.stores.postgres.driver import PostgresDriver
    from tests.conftest import create_database, drop_database, fresh_name

    admin = embedded.EmbeddedPostgres(stack_home).url("postgres")
    name = fresh_name("chtpl")
    url = create_database(admin, name)
    driver = PostgresDriver(url)
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
    finally:
        driver.close()
    add_dictionary_views(url)
    SECRET[:] = [stack_home / "test-secrets" / "clickhouse-dictionary-password"]
    yield admin, name
    drop_database(admin, name)


@pytest.fixture
def pg(pg_template: tuple[str, str]) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own."""
    from tests.conftest import create_database, drop_database, fresh_name

    admin, template = pg_template
    name = fresh_name()
    url = create_database(admin, name, template=template)
    yield url
    drop_database(admin, name)


@pytest.fixture
def ch(ch_empty: Client, pg: str) -> Client:
    """A database with every ClickHouse migration applied; dictionaries read ``pg``."""
    Migrator(driver_for(ch_empty, pg), MIGRATIONS).up()
    return ch_empty


def scalar(client: Client, sql: str, parameters: dict[str, object] | None = None) -> object:
    """The one value of ``sql``."""
    return client.query(sql, parameters=parameters).result_rows[0][0]


def table_rows(client: Client, sql: str,
               parameters: dict[str, object] | None = None) -> list[tuple[object, ...]]:
    return [tuple(row) for row in client.query(sql, parameters=parameters).result_rows]

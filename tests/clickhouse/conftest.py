"""ClickHouse fixtures: one migrated database per test.

chDB (the default) opens one path per process, so every test of the session
uses one chDB path under the stack home and gets its own *database* in it.
With ``PLATFORMDB_TEST_CLICKHOUSE_URL`` the same tests also run on that
server, again one database per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from platformdb.clickhouse import ChdbClient, ClickHouse, ServerClient
from platformdb.config import Settings
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.clickhouse import ClickHouseDriver, postgres_placeholders

CH_TARGETS = ["chdb"] + (["server"] if os.environ.get("PLATFORMDB_TEST_CLICKHOUSE_URL") else [])
MIGRATIONS = discover(migrations_dir("clickhouse"))


def open_client(target: str, home: Path, database: str) -> ClickHouse:
    if target == "server":
        return ServerClient(os.environ["PLATFORMDB_TEST_CLICKHOUSE_URL"], database)
    return ChdbClient(home / "test-clickhouse", database)


@pytest.fixture(params=CH_TARGETS)
def ch_target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ch_empty(ch_target: str, stack_home: Path) -> Iterator[ClickHouse]:
    """An empty database of its own."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    client = open_client(ch_target, stack_home, database)
    try:
        yield client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        client.close()


def driver_for(client: ClickHouse, pg_url: str | None, home: Path,
               cluster: str | None = None) -> ClickHouseDriver:
    settings = Settings(home=home, postgres_url=pg_url)
    placeholders = postgres_placeholders(pg_url) if pg_url else {}
    driver = ClickHouseDriver(client, placeholders, cluster, own_client=False)
    driver.set_migrations(MIGRATIONS)
    return driver


@pytest.fixture(scope="session")
def pg_template(stack_home: Path) -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL template on the embedded server (ClickHouse tests need one PG)."""
    from platformdb import embedded
    from platformdb.migrate.postgres import PostgresDriver
    from tests.conftest import create_database, drop_database, fresh_name

    admin = embedded.EmbeddedPostgres(stack_home).url("postgres")
    name = fresh_name("chtpl")
    driver = PostgresDriver(create_database(admin, name))
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
    finally:
        driver.close()
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
def ch(ch_empty: ClickHouse, pg: str, stack_home: Path) -> ClickHouse:
    """A database with every ClickHouse migration applied; dictionaries read ``pg``."""
    Migrator(driver_for(ch_empty, pg, stack_home), MIGRATIONS).up()
    return ch_empty

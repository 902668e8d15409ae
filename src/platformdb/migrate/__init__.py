"""Migrations for every store, through one engine and one driver per store.

Adding a store is one new driver module and one line in :data:`DRIVERS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from platformdb import embedded
from platformdb.config import Settings
from platformdb.errors import ConfigError
from platformdb.migrate.base import AppliedMigration, Driver, Migration
from platformdb.migrate.engine import Migrator, StatusRow, Step
from platformdb.migrate.files import discover, next_file_names
from platformdb.resources import data_dir

__all__ = [
    "DRIVERS",
    "SCRIPT_STORES",
    "STORES",
    "AppliedMigration",
    "Driver",
    "Migration",
    "Migrator",
    "StatusRow",
    "Step",
    "apply_pending",
    "discover",
    "migrations_dir",
    "new_migration",
    "open_migrator",
]


def _postgres(settings: Settings) -> Driver:
    from platformdb.migrate.postgres import PostgresDriver

    url = embedded.resolve(settings, postgres=True).postgres_url
    assert url is not None
    return PostgresDriver(url)


def _clickhouse(settings: Settings) -> Driver:
    # clickhouse-connect and psycopg load only when a ClickHouse migrator is opened
    from platformdb import clickhouse
    from platformdb.clickhouse import dictionaries
    from platformdb.clickhouse.ddl import Topology
    from platformdb.migrate.clickhouse import ClickHouseDriver, dictionary_placeholders

    stack = ExitStack()
    client = stack.enter_context(clickhouse.connect(clickhouse.target_of(settings)))
    database = str(client.database)
    # TODO(lead): PLATFORMDB_CLICKHOUSE_MANAGED and PLATFORMDB_CLICKHOUSE_DICTIONARY_PG_URL
    # belong in Settings (config.py); read here until they are there.
    if settings.clickhouse_cluster:
        topology = Topology.on_cluster(settings.clickhouse_cluster, database)
    elif os.environ.get("PLATFORMDB_CLICKHOUSE_MANAGED", "").lower() in ("1", "true", "yes"):
        topology = Topology.managed(database)
    else:
        topology = Topology.single(database)

    def placeholders() -> dict[str, str]:  # only a migration that fills ${...} asks
        login = os.environ.get(dictionaries.ENV_URL, "").strip()
        if not login:
            owner = embedded.resolve(settings, postgres=True).postgres_url
            assert owner is not None
            login = dictionaries.provision_login(owner, dictionaries.secret_file(settings.home))
        return dictionary_placeholders(client, login, topology)

    return ClickHouseDriver(client, placeholders, topology, on_close=stack.close)


DRIVERS: dict[str, Callable[[Settings], Driver]] = {
    "postgresql": _postgres,
    "clickhouse": _clickhouse,
}


def migrations_dir(store: str) -> Path:
    return data_dir(store) / "migrations"


SCRIPT_STORES = ("redis",)
"""Stores without numbered migrations: ``up`` loads their scripts (:mod:`.redis`)."""

STORES = (*DRIVERS, *SCRIPT_STORES)


def check_store(store: str, numbered: bool = False) -> str:
    """``store`` if it is known (and, with ``numbered``, has numbered migrations)."""
    if store not in STORES:
        raise ConfigError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if numbered and store in SCRIPT_STORES:
        raise ConfigError(f"{store} has no numbered migrations; `platformdb migrate up` "
                          "loads its scripts")
    return store


@contextmanager
def open_migrator(store: str, settings: Settings,
                  directory: Path | None = None) -> Iterator[Migrator]:
    """A :class:`Migrator` for ``store``, its connection closed on exit."""
    migrations = discover(directory or migrations_dir(check_store(store, numbered=True)))
    driver = DRIVERS[store](settings)
    try:
        yield Migrator(driver, migrations)
    finally:
        driver.close()


def apply_pending(settings: Settings, stores: list[str] | None = None,
                  target: int | None = None, dry_run: bool = False) -> list[Step]:
    """Apply every pending migration of each store (all stores by default), up to
    ``target`` where given (scripts have no numbers: ``target`` does not apply)."""
    from platformdb.migrate import redis as redis_scripts

    steps: list[Step] = []
    for store in stores or list(STORES):
        if store in SCRIPT_STORES:
            with redis_scripts.open_client(settings) as client:
                steps.extend(redis_scripts.up(client, dry_run=dry_run))
            continue
        with open_migrator(store, settings) as migrator:
            steps.extend(migrator.up(target=target, dry_run=dry_run))
    return steps


def new_migration(store: str, name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Create the next numbered up/down pair for ``store`` from a template."""
    folder = directory or migrations_dir(check_store(store, numbered=True))
    up_path, down_path = next_file_names(folder, name)
    up_path.write_text(
        f"-- {up_path.stem}: say here WHY this migration exists.\n"
        f"-- Keep it idempotent (IF NOT EXISTS / IF EXISTS) and never edit it once applied.\n\n"
    )
    down_path.write_text(f"-- Reverts {up_path.name}.\n\n")
    return up_path, down_path

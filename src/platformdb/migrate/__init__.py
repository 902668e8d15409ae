"""Migrations for every store, through one engine and one driver per store.

Adding a store is one new driver module and one line in :data:`DRIVERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    "NUMBERED_STORES",
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
    from platformdb.clickhouse import open_client
    from platformdb.migrate.clickhouse import ClickHouseDriver, postgres_placeholders

    client = open_client(settings)
    driver = ClickHouseDriver(client, lambda: postgres_placeholders(settings),
                              settings.clickhouse_cluster)
    driver.set_migrations(discover(migrations_dir("clickhouse")))
    return driver


def _redis(settings: Settings) -> Driver:
    from platformdb.migrate.redis import RedisDriver

    url = embedded.resolve(settings, redis=True).redis_url
    assert url is not None
    return RedisDriver(url)


def _redis_migrations() -> list[Migration]:
    from platformdb.migrate.redis import migrations

    return migrations()


DRIVERS: dict[str, Callable[[Settings], Driver]] = {
    "postgresql": _postgres,
    "clickhouse": _clickhouse,
    "redis": _redis,
}

MIGRATIONS: dict[str, Callable[[], list[Migration]]] = {"redis": _redis_migrations}
"""Stores whose migrations are not numbered files: what their driver module provides
(Redis: the functions library, one repeatable migration)."""


def migrations_dir(store: str) -> Path:
    return data_dir(store) / "migrations"


STORES = tuple(DRIVERS)
NUMBERED_STORES = tuple(store for store in DRIVERS if store not in MIGRATIONS)


def check_store(store: str, numbered: bool = False) -> str:
    """``store`` if it is known (and, with ``numbered``, has numbered migration files)."""
    if store not in STORES:
        raise ConfigError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if numbered and store not in NUMBERED_STORES:
        raise ConfigError(f"{store} has no numbered migrations; `platformdb migrate up` "
                          "loads its functions library")
    return store


@contextmanager
def open_migrator(store: str, settings: Settings,
                  directory: Path | None = None) -> Iterator[Migrator]:
    """A :class:`Migrator` for ``store``, its connection closed on exit."""
    check_store(store)
    if directory is None and store in MIGRATIONS:
        migrations = MIGRATIONS[store]()
    else:
        migrations = discover(directory or migrations_dir(store))
    driver = DRIVERS[store](settings)
    try:
        yield Migrator(driver, migrations)
    finally:
        driver.close()


def apply_pending(settings: Settings, stores: list[str] | None = None,
                  target: int | None = None, dry_run: bool = False) -> list[Step]:
    """Apply every pending migration of each store (all stores by default), up to
    ``target`` where given (the Redis library has no numbers: ``target`` does not apply)."""
    steps: list[Step] = []
    for store in stores or list(STORES):
        with open_migrator(store, settings) as migrator:
            numbered = store in NUMBERED_STORES
            steps.extend(migrator.up(target=target if numbered else None, dry_run=dry_run))
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

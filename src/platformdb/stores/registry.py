"""The registry of store objects: the only list of stores. Adding a store is one folder
under ``stores/`` and one line here.

Everything that names the stores is derived from it: the names commands accept
and visit (in this order), the settings that locate them, which have numbered
migrations, and the command line's choices.
"""

from __future__ import annotations

from platformdb.errors import ConfigError
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.base import Store, StoreBase
from platformdb.stores.clickhouse import ClickHouseStore
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.redis import RedisStore
from platformdb.types import Endpoints

REGISTRY: dict[str, type[StoreBase]] = {
    "postgresql": PostgresStore,
    "clickhouse": ClickHouseStore,
    "redis": RedisStore,
}


def names() -> tuple[str, ...]:
    """Every store platformdb owns, in the order commands visit them."""
    return tuple(REGISTRY)


def numbered_names() -> tuple[str, ...]:
    """Stores whose migrations are numbered files (``NNN_name.sql``)."""
    return tuple(name for name, kind in REGISTRY.items() if kind.numbered)


def url_variable(name: str) -> str | None:
    """The setting that names ``name``'s server, when it is a registered store."""
    kind = REGISTRY.get(name)
    return kind.url_variable or None if kind is not None else None


def check_store(name: str, allowed: tuple[str, ...] | None = None) -> str:
    """``name`` if it names a store, else a :class:`ConfigError` (exit 2) listing the choices."""
    allowed = names() if allowed is None else allowed
    if name not in allowed:
        raise ConfigError(f"unknown store {name!r}; choose one of {', '.join(allowed)}")
    return name


def check_stores(chosen: list[str] | None, allowed: tuple[str, ...] | None = None) -> list[str]:
    """The stores a command visits: ``chosen`` checked and de-duplicated, or all of them."""
    allowed = names() if allowed is None else allowed
    if not chosen:
        return list(allowed)
    return list(dict.fromkeys(check_store(name, allowed) for name in chosen))


def check_numbered(name: str) -> str:
    """``name`` if it has numbered migration files, else a :class:`ConfigError`."""
    if name not in numbered_names():
        raise ConfigError(f"{name} has no numbered migrations; choose one of "
                          f"{', '.join(numbered_names())}")
    return name


def open_store(name: str, endpoints: Endpoints, *,
               options: MigrateOptions | None = None) -> Store:
    """The store object ``name`` for ``endpoints`` (nothing is connected yet); ``options``:
    how its migrations behave (lock timeout, retries, runner wait...)."""
    return REGISTRY[check_store(name)].from_endpoints(endpoints, options)


def open_stores(endpoints: Endpoints, chosen: list[str] | None = None, *,
                options: MigrateOptions | None = None) -> list[Store]:
    """The store objects of ``chosen`` (default: every store), in registry order."""
    return [open_store(name, endpoints, options=options) for name in check_stores(chosen)]

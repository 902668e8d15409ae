"""The registry of store objects: adding a store is one line here."""

from __future__ import annotations

from collections.abc import Callable

from platformdb.stores.base import Store
from platformdb.stores.clickhouse import ClickHouseStore
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.redis import RedisStore
from platformdb.types import STORE_NAMES, Endpoints, check_store, check_stores

REGISTRY: dict[str, Callable[[Endpoints], Store]] = {
    "postgresql": PostgresStore.from_endpoints,
    "clickhouse": ClickHouseStore.from_endpoints,
    "redis": RedisStore.from_endpoints,
}
assert tuple(REGISTRY) == STORE_NAMES


def open_store(name: str, endpoints: Endpoints) -> Store:
    """The store object ``name`` for ``endpoints`` (nothing is connected yet)."""
    return REGISTRY[check_store(name)](endpoints)


def open_stores(endpoints: Endpoints, names: list[str] | None = None) -> list[Store]:
    """The store objects of ``names`` (default: every store), in registry order."""
    return [open_store(name, endpoints) for name in check_stores(names)]

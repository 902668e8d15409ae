"""The store model: one object per store, and the registry every command loops over.

Each store object owns, for its store: where it is (a URL resolved once by the
caller), health, metrics, migrations, backup and restore, one org's data,
queries and the interactive client. Commands never branch on a store's name;
they ask the registry for the stores they visit and call the same methods on
each::

    for store in open_stores(endpoints, ["postgresql", "redis"]):
        print(store.health())

Everything about operating one store lives in its folder (``stores/<store>/``);
adding a store is one folder plus one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from platformdb.stores.base import Store, StoreBase
from platformdb.stores.clickhouse import ClickHouseStore
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.redis import RedisStore
from platformdb.stores.registry import REGISTRY, open_store, open_stores

__all__ = [
    "REGISTRY",
    "ClickHouseStore",
    "PostgresStore",
    "RedisStore",
    "Store",
    "StoreBase",
    "open_store",
    "open_stores",
]

"""ClickHouse as a store: migrations, health, key metrics, backup and restore."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from platformdb import clickhouse
from platformdb.backup import clickhouse as ch_backup
from platformdb.backup.manifest import read_manifest
from platformdb.clickhouse import stats as ch_stats
from platformdb.config import Settings
from platformdb.errors import StoreUnavailable
from platformdb.migrate.base import Driver
from platformdb.migrate.clickhouse import ClickHouseDriver, postgres_placeholders
from platformdb.migrate.files import discover
from platformdb.stores.base import StoreBase, Unavailable
from platformdb.types import Endpoints, Metric, Restored


class ClickHouseStore(StoreBase):
    """The platform's analytics database: a ClickHouse server, or chDB at a path.

    ``postgres_url`` is where the dictionaries read names from (filled into the
    dictionary DDL when migrations run); ``cluster`` renders DDL for a cluster.
    """

    name = "clickhouse"

    def __init__(self, url: str | None, why_missing: str = "", *,
                 postgres_url: str | None = None, cluster: str | None = None) -> None:
        super().__init__(url, why_missing)
        self.postgres_url = postgres_url
        self.why_missing_postgres = "no PostgreSQL server is configured"
        self.cluster = cluster

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints) -> ClickHouseStore:
        store = cls(endpoints.clickhouse, endpoints.missing(cls.name),
                    postgres_url=endpoints.postgres, cluster=endpoints.clickhouse_cluster)
        store.why_missing_postgres = endpoints.missing("postgresql")
        return store

    def _settings(self) -> Settings:
        return Settings(home=Path(), postgres_url=self.postgres_url,
                        clickhouse_url=self.require_url(), clickhouse_cluster=self.cluster)

    def driver(self) -> Driver:
        client = clickhouse.open_client(self._settings())
        driver = ClickHouseDriver(client, self._placeholders, self.cluster)
        driver.set_migrations(discover(self.migrations_dir()))
        return driver

    def _placeholders(self) -> dict[str, str]:
        """``${pg_*}`` of the dictionary DDL; only migrations that create dictionaries ask."""
        if self.postgres_url is None:
            raise Unavailable(f"the ClickHouse dictionaries read PostgreSQL, which is not "
                              f"available: {self.why_missing_postgres}")
        return postgres_placeholders(self.postgres_url)

    def metrics(self) -> list[Metric]:
        with clickhouse.connect(self._settings()) as client:
            return ch_stats.collect(client)

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        return ch_backup.backup(self._settings(), out_dir)

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False
              ) -> RestoreOnSwitch:
        read_manifest(folder, self.name)

        def run() -> Restored:
            report = ch_backup.restore(self._settings(), folder, force=force, verify=verify)
            return Restored(self.name, report.target, dict(report.tables), report.mismatches)

        return RestoreOnSwitch(run, Restored(self.name, self.target, {}, []))


class RestoreOnSwitch:
    """Staging for a store whose restore is not split yet: checked at stage, run at switch.

    The store's own restore already loads beside the target and replaces it only
    once loaded and verified; what it cannot do is wait for the other stores, or
    be undone after it ran.
    """

    def __init__(self, run: Callable[[], Restored], report: Restored) -> None:
        self._run = run
        self.report = report

    def switch(self) -> None:
        self.report = self._run()

    def undo(self) -> None:
        raise StoreUnavailable(f"the {self.report.store} restore cannot be undone after it ran")

    def commit(self) -> None:
        return None

    def discard(self) -> None:
        return None

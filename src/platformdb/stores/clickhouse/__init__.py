"""ClickHouse as a store: migrations, health, key metrics, backup and restore (and, in
this folder, its DDL templates, dictionaries, tenants' rows and the prompt)."""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

from platformdb import clickhouse
from platformdb.config import ENV_CLICKHOUSE
from platformdb.errors import ConfigError, PlatformDBError, Unavailable
from platformdb.migrate.base import Driver
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.base import StoreBase, TenantData, query_only
from platformdb.stores.clickhouse import backup as ch_backup
from platformdb.stores.clickhouse import console, dictionaries
from platformdb.stores.clickhouse import metrics as ch_stats
from platformdb.stores.clickhouse.ddl import Topology
from platformdb.stores.clickhouse.driver import (
    ClickHouseDriver,
    dictionary_placeholders,
    postgres_placeholders,
)
from platformdb.stores.clickhouse.tenant import opened
from platformdb.types import Endpoints, Metric, QueryResult, StoreHealth

HEALTH_WAIT = 5.0
"""Seconds a health check waits for a chDB path another process has open."""


class ClickHouseStore(StoreBase):
    """The platform's analytics database: a ClickHouse server, or chDB at a path.

    The dictionaries read PostgreSQL as their own least-privilege login
    (:mod:`platformdb.stores.clickhouse.dictionaries`): ``dictionary_login`` when one is
    configured, else one provisioned with the PostgreSQL owner's URL (its password
    kept under ``home``). ``cluster`` renders DDL for a cluster; ``managed`` for a
    managed service that refuses ``ON CLUSTER``.
    """

    name = "clickhouse"
    ledger_in_backups = True
    url_variable = ENV_CLICKHOUSE

    def __init__(self, url: str | None, why_missing: str = "", *,
                 postgres_url: str | None = None, cluster: str | None = None,
                 managed: bool = False, dictionary_login: str | None = None,
                 home: Path | None = None, options: MigrateOptions | None = None,
                 wait: float = clickhouse.CHDB_WAIT,
                 why_missing_postgres: str = "no PostgreSQL server is configured") -> None:
        super().__init__(url, why_missing, options=options)
        self.postgres_url = postgres_url
        self.why_missing_postgres = why_missing_postgres
        self.cluster = cluster
        self.managed = managed
        self.dictionary_login = dictionary_login
        self.home = home
        self.wait = wait
        """Seconds to wait for a chDB path another process holds."""

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints,
                       options: MigrateOptions | None = None) -> ClickHouseStore:
        return cls(endpoints.clickhouse, endpoints.missing(cls.name),
                   postgres_url=endpoints.postgres, cluster=endpoints.clickhouse_cluster,
                   managed=endpoints.clickhouse_managed,
                   dictionary_login=endpoints.clickhouse_dictionary_login, home=endpoints.home,
                   options=options, why_missing_postgres=endpoints.missing("postgresql"))

    def waiting(self, wait: float) -> ClickHouseStore:
        """A copy of this store that waits ``wait`` seconds for a chDB path another process
        holds (this one is left as it was built)."""
        probe = copy.copy(self)
        probe.wait = wait
        return probe

    def topology(self, database: str) -> Topology:
        if self.cluster:
            return Topology.on_cluster(self.cluster, database)
        return Topology.managed(database) if self.managed else Topology.single(database)

    def dictionary_login_url(self) -> str:
        """The dictionaries' PostgreSQL login: configured, or provisioned (never the owner's)."""
        if self.dictionary_login:
            return self.dictionary_login
        if self.postgres_url is None:
            raise Unavailable(f"the ClickHouse dictionaries read PostgreSQL, which is not "
                              f"available: {self.why_missing_postgres}", store="postgresql")
        if self.home is None:
            raise ConfigError(f"set {dictionaries.ENV_URL} to the dictionaries' PostgreSQL "
                              "login (no PLATFORMDB_HOME to keep a provisioned one's password)")
        return dictionaries.provision_login(self.postgres_url,
                                            dictionaries.secret_file(self.home))

    def driver(self) -> Driver:
        stack = ExitStack()
        client = stack.enter_context(clickhouse.connect(self.require_url(), wait=self.wait))
        topology = self.topology(str(client.database))

        def placeholders() -> dict[str, str]:  # only a migration that fills ${...} asks
            return dictionary_placeholders(client, self.dictionary_login_url(), topology)

        return ClickHouseDriver(client, placeholders, topology, on_close=stack.close,
                                options=self.migrate_options)

    def health(self) -> StoreHealth:
        """On chDB the detail says the lock's state: free (the check opened the path), or
        which process holds it (after waiting :data:`HEALTH_WAIT` seconds for it)."""
        # a check waits briefly for a chDB path another process holds
        result = StoreBase.health(self.waiting(HEALTH_WAIT))
        if result.healthy and self.url is not None and self.url.startswith("chdb:"):
            result.detail = "ok (chDB: the path was free, no other process holds it)"
        if result.healthy and self.url is not None:
            self._check_dictionaries(result)
        return result

    def _check_dictionaries(self, result: StoreHealth) -> None:
        """A ClickHouse whose dictionary does not load and answer is unhealthy (one that
        exists but cannot read its source is not fine)."""
        try:
            with clickhouse.connect(self.require_url(), wait=HEALTH_WAIT) as client:
                problems = dictionaries.load_problems(client)
        except PlatformDBError as exc:
            problems = [f"the dictionaries cannot be checked: {exc}"]
        if problems:
            result.healthy, result.detail = False, problems[0]
            result.problems = [*result.problems, *problems]

    def metrics(self) -> list[Metric]:
        return ch_stats.clickhouse_metrics(self.require_url())

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        return ch_backup.backup(self.require_url(), out_dir)

    def stage(self, folder: Path, *, force: bool = False,
              verify: bool = False) -> ch_backup.StagedRestore:
        return ch_backup.StagedRestore(
            self.require_url(), folder, force=force, verify_after=verify,
            placeholders=lambda: postgres_placeholders(self.dictionary_login_url()))

    def recover(self, record: dict[str, Any], *, forward: bool) -> str:
        with clickhouse.connect(self.require_url(), wait=self.wait) as client:
            return ch_backup.recover(
                client, record, forward=forward,
                placeholders=lambda: postgres_placeholders(self.dictionary_login_url()))

    def leftovers(self) -> list[str]:
        # asked by health: waits no longer for a chDB path another process holds
        with clickhouse.connect(self.require_url(),
                                wait=min(self.wait, HEALTH_WAIT)) as client:
            return ch_backup.leftovers(client)

    def drop_leftovers(self, names: list[str]) -> None:
        with clickhouse.connect(self.require_url(), wait=self.wait) as client:
            ch_backup.drop_leftovers(client, names)

    def query(self, statement: str) -> QueryResult:
        return console.query(self.require_url(), query_only(statement), wait=self.wait)

    def shell(self, args: list[str], *, history: Path | None = None) -> int:
        return console.shell(self.require_url(), args, history=history, wait=self.wait)

    def tenant(self, *, prefix: str = "") -> AbstractContextManager[TenantData]:
        return opened(self.require_url(), wait=self.wait,
                      cluster=None if self.managed else self.cluster)

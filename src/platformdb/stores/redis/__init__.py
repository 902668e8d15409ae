"""Redis as a store: the functions library (its migration), health, key metrics,
backup and restore, tenants' keys and jobs, commands and valkey-cli.

Everything about operating Redis lives in this folder: the migration driver
(:mod:`.driver`), backups (:mod:`.backup`), one org's keys and jobs
(:mod:`.tenant`), the client (:mod:`.console`) and the ACL users (:mod:`.acl`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platformdb.config import ENV_REDIS
from platformdb.errors import CheckFailed
from platformdb.migrate.base import Driver, Migration
from platformdb.redis import client as redis_client
from platformdb.stores.base import StoreBase, TenantData, query_only, run_client
from platformdb.stores.redis import backup as redis_backup
from platformdb.stores.redis import console
from platformdb.stores.redis.driver import RedisDriver, migrations
from platformdb.stores.redis.tenant import RedisTenant
from platformdb.types import Metric, QueryResult, Restored, Step


class RedisStore(StoreBase):
    """The platform's Redis (standalone or Cluster) at one URL.

    Its one migration is the ``platformdb`` functions library (repeatable: loaded
    again whenever the code changes); services cannot work without it, so a
    library that is not loaded, or not this checkout's, makes the store unhealthy.
    """

    name = "redis"
    url_variable = ENV_REDIS
    numbered = False

    def migrations(self) -> list[Migration]:
        return migrations()

    def driver(self) -> Driver:
        return RedisDriver(self.require_url())

    def migrate_up(self, *, target: int | None = None, dry_run: bool = False) -> list[Step]:
        # the library is one repeatable migration: `--to N` numbers do not apply to it
        return super().migrate_up(target=None, dry_run=dry_run)

    def metrics(self) -> list[Metric]:
        return redis_metrics(self.require_url())

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        return redis_backup.backup(self.require_url(), out_dir)

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> StagedKeys:
        staged = redis_backup.stage(folder, self.require_url(), force=force)
        try:
            mismatches = redis_backup.verify(staged)
            if mismatches:
                raise CheckFailed(f"the staged Redis restore differs from the manifest "
                                  f"({mismatches[0]}); nothing was changed")
        except BaseException:
            redis_backup.discard(staged)
            staged.close()
            raise
        return StagedKeys(staged, Restored(self.name, self.target, dict(staged.manifest.tables),
                                           []))

    def recover(self, record: dict[str, Any], *, forward: bool) -> str:
        return redis_backup.recover(self.require_url(), record, forward=forward)

    def leftovers(self) -> list[str]:
        return redis_backup.leftovers(self.require_url())

    def drop_leftovers(self, names: list[str]) -> None:
        redis_backup.drop_leftovers(self.require_url(), names)

    def query(self, statement: str) -> QueryResult:
        return console.query(self.require_url(), query_only(statement))

    def shell(self, args: list[str], *, history: Path | None = None) -> int:
        return run_client(console.redis_cli_command(self.require_url(), args))

    @contextmanager
    def tenant(self, *, prefix: str = "") -> Iterator[TenantData]:
        client = redis_client.connect(self.require_url())
        try:
            def head() -> int:
                return max((m.version for m in RedisDriver(client=client).applied()), default=0)

            yield RedisTenant(client, head, prefix)
        finally:
            client.close()


class StagedKeys:
    """A backup written under staging names; switching renames them into place."""

    def __init__(self, staged: redis_backup.Staged, report: Restored) -> None:
        self.staged = staged
        self.report = report

    def journal_record(self) -> dict[str, object]:
        return redis_backup.journal_record(self.staged)

    def switch(self) -> None:
        redis_backup.switch(self.staged)

    def undo(self) -> None:
        try:
            redis_backup.undo(self.staged)
        finally:
            self.staged.close()

    def commit(self) -> None:
        try:
            redis_backup.commit(self.staged)
        finally:
            self.staged.close()

    def discard(self) -> None:
        try:
            redis_backup.discard(self.staged)
        finally:
            self.staged.close()


def redis_metrics(url: str) -> list[Metric]:
    client = redis_client.connect(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        cluster = redis_client.is_cluster(client)
        info = _merged(client.info(), cluster)
        commands = _merged(client.info("commandstats"), cluster)
    finally:
        client.close()
    hits, misses = float(info.get("keyspace_hits", 0)), float(info.get("keyspace_misses", 0))
    calls = sum(float(v.get("calls", 0)) for v in commands.values() if isinstance(v, dict))
    usec = sum(float(v.get("usec", 0)) for v in commands.values() if isinstance(v, dict))
    return [
        Metric("redis", "memory_used_bytes", float(info["used_memory"]), "memory in use", {},
               "bytes"),
        Metric("redis", "hit_ratio", hits / (hits + misses) if hits + misses else 1.0,
               "keyspace hits / (hits + misses)"),
        Metric("redis", "keyspace_hits", hits, "successful key lookups", kind="counter"),
        Metric("redis", "keyspace_misses", misses, "failed key lookups", kind="counter"),
        Metric("redis", "command_latency_seconds", usec / calls / 1e6 if calls else 0.0,
               "mean server-side time per command", {}, "seconds"),
        Metric("redis", "evicted_keys", float(info.get("evicted_keys", 0)),
               "keys evicted by maxmemory", kind="counter"),
        Metric("redis", "connected_clients", float(info.get("connected_clients", 0)),
               "client connections"),
    ]


def _merged(info: Any, cluster: bool) -> dict[str, Any]:
    """INFO of one server, or of a Cluster (node -> section) summed over the nodes."""
    if not cluster:
        return dict(info)
    total: dict[str, Any] = {}
    for node_info in info.values():
        for key, value in node_info.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                merged = total.setdefault(key, {})
                for field, number in value.items():
                    if isinstance(number, int | float):
                        merged[field] = merged.get(field, 0) + number
    return total

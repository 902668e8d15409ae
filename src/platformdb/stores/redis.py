"""Redis as a store: scripts, health, key metrics, backup and restore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from platformdb.backup import redis as redis_backup
from platformdb.backup.manifest import read_manifest
from platformdb.errors import ConfigError, PlatformDBError, StoreUnavailable
from platformdb.migrate import redis as redis_scripts
from platformdb.redis import client as redis_client
from platformdb.stores.base import StoreBase, timed
from platformdb.types import Endpoints, Metric, Restored, StatusRow, Step, StoreHealth


class RedisStore(StoreBase):
    """The platform's Redis (standalone or Cluster) at one URL."""

    name = "redis"

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints) -> RedisStore:
        return cls(endpoints.redis, endpoints.missing(cls.name))

    def health(self) -> StoreHealth:
        """PING with latency, plus the scripts' state (loaded at another version: unhealthy)."""
        if self.url is None:
            return StoreHealth(self.name, False, None, self.target, self.why_missing)
        client = redis_client.connect(self.url, socket_connect_timeout=3, socket_timeout=3)
        try:
            latency = timed(client.ping)
            scripts = redis_scripts.status(client)
        except RedisError as exc:
            return StoreHealth(self.name, False, None, self.target, f"PING failed: {exc}")
        except PlatformDBError as exc:
            return StoreHealth(self.name, False, None, self.target, str(exc))
        finally:
            client.close()
        pending = [f"script {s.name}" for s in scripts if s.state in ("pending", "not on server")]
        problems = redis_scripts.verify_rows(scripts)
        detail = problems[0] if problems else (
            f"ok ({len(pending)} script(s) not loaded yet; `platformdb migrate up` loads them)"
            if pending else "ok")
        return StoreHealth(self.name, not problems, round(latency, 2), self.target, detail,
                           pending, problems)

    # Redis has no numbered migrations: what `migrate` installs is the script library.

    @contextmanager
    def _client(self) -> Iterator[Any]:
        client = redis_client.connect(self.require_url())
        try:
            redis_client.ping(client)
            yield client
        finally:
            client.close()

    def open_migrator(self) -> Any:
        raise ConfigError("redis has no numbered migrations; `platformdb migrate up` loads "
                          "its scripts")

    def migrate_up(self, *, target: int | None = None, dry_run: bool = False) -> list[Step]:
        with self._client() as client:
            return redis_scripts.up(client, dry_run=dry_run)

    def migration_status(self) -> list[StatusRow]:
        with self._client() as client:
            return [StatusRow(int(row.version) if row.version.isdigit() else 0, row.name,
                              row.state, None, None, row.loaded_by)
                    for row in redis_scripts.status(client)]

    def verify(self) -> list[str]:
        with self._client() as client:
            return redis_scripts.verify(client)

    def metrics(self) -> list[Metric]:
        return redis_metrics(self.require_url())

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        return redis_backup.backup(self.require_url(), out_dir)

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False
              ) -> RestoreOnSwitch:
        read_manifest(folder, self.name)
        url = self.require_url()

        def run() -> Restored:
            report = redis_backup.restore(folder, url, force=force, verify=verify)
            return Restored(self.name, report.target, dict(report.types), report.mismatches)

        return RestoreOnSwitch(run, Restored(self.name, self.target, {}, []))


def _merged(info: Any, cluster: bool) -> dict[str, Any]:
    """INFO of one server, or of a Cluster (node -> section) summed over the nodes."""
    if cluster:
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
    return dict(info)


def redis_metrics(url: str) -> list[Metric]:
    client = redis_client.connect(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        cluster = redis_client.is_cluster(client)
        info = _merged(client.info(), cluster)
        commands = _merged(client.info("commandstats"), cluster)
    finally:
        client.close()
    hits, misses = float(info.get("keyspace_hits", 0)), float(info.get("keyspace_misses", 0))
    calls = sum(float(v.get("calls", 0)) for v in commands.values())
    usec = sum(float(v.get("usec", 0)) for v in commands.values())
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

"""PostgreSQL as a store: migrations, health, key metrics, backup and restore, tenants,
queries and psql.

Everything about operating PostgreSQL lives in this folder: the migration driver
(:mod:`.driver`) and planner (:mod:`.plan`, :mod:`.analysis`, :mod:`.catalog`,
:mod:`.snapshot`, :mod:`.online_index`, :mod:`.backfill`), backups
(:mod:`.backup`), one org's data (:mod:`.tenant`), the client (:mod:`.console`),
and its tools: date partitions (:mod:`.partitions`) and PgBouncer (:mod:`.pgbouncer`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from platformdb.config import ENV_POSTGRES
from platformdb.errors import PlatformDBError
from platformdb.migrate.base import Driver
from platformdb.migrate.options import MigrateOptions
from platformdb.postgres import connect
from platformdb.stores.base import StoreBase, TenantData, query_only, run_client, timed
from platformdb.stores.postgres import backup as pg_backup
from platformdb.stores.postgres import console, pgbouncer
from platformdb.stores.postgres.driver import PostgresDriver
from platformdb.stores.postgres.tenant import PostgresTenant
from platformdb.types import Endpoints, Metric, QueryResult, Restored, StoreHealth


class PostgresStore(StoreBase):
    """The platform's OLTP database at one URL."""

    name = "postgresql"
    ledger_in_backups = True
    url_variable = ENV_POSTGRES

    def __init__(self, url: str | None, why_missing: str = "", *,
                 options: MigrateOptions | None = None, pgbouncer: str | None = None) -> None:
        super().__init__(url, why_missing, options=options)
        self.pgbouncer = pgbouncer
        """PgBouncer's admin console when one pools this server (health and stats)."""

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints,
                       options: MigrateOptions | None = None) -> PostgresStore:
        return cls(endpoints.postgres, endpoints.missing(cls.name), options=options,
                   pgbouncer=endpoints.pgbouncer)

    def driver(self) -> Driver:
        return PostgresDriver(self.require_url(), options=self.migrate_options)

    def metrics(self) -> list[Metric]:
        return postgres_metrics(self.require_url())

    def health(self) -> StoreHealth:
        """The ledger check, and replication always named: ``ok (no replicas)``,
        ``ok (2 replicas, max lag 0.1 s)``, ``ok (standby, 0 bytes to replay)``."""
        result = super().health()
        if self.url is None or result.latency_ms is None:
            return result  # not reachable: the reason is the detail
        try:
            replication = replication_summary(self.url)
        except (psycopg.Error, PlatformDBError) as exc:
            replication = f"replication unknown: {str(exc).strip().splitlines()[0]}"
        result.detail = (f"ok ({replication})" if result.detail == "ok"
                         else f"{result.detail}; {replication}")
        return result

    def health_rows(self) -> list[StoreHealth]:
        """This server's health, then its PgBouncer's when one pools it."""
        rows = [self.health()]
        if self.pgbouncer is not None:
            rows.append(pgbouncer.health(self.pgbouncer))
        return rows

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        return pg_backup.backup(self.require_url(), out_dir,
                                directory_format=bool(options.get("directory_format")),
                                jobs=int(options.get("jobs", 1)))

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False,
              jobs: int | None = None) -> StagedDatabase:
        """``jobs``: parallel ``pg_restore`` jobs (default: one per CPU)."""
        staged = pg_backup.stage(folder, self.require_url(), force=force, verify=verify,
                                 jobs=jobs)
        return StagedDatabase(staged, Restored(self.name, self.target, dict(staged.report.tables),
                                               staged.report.mismatches))

    def recover(self, record: dict[str, Any], *, forward: bool) -> str:
        return pg_backup.recover(self.require_url(), record, forward=forward)

    def leftovers(self) -> list[str]:
        return pg_backup.leftovers(self.require_url())

    def drop_leftovers(self, names: list[str]) -> None:
        pg_backup.drop_leftovers(self.require_url(), names)

    def query(self, statement: str) -> QueryResult:
        return console.query(self.require_url(), query_only(statement))

    def shell(self, args: list[str], *, history: Path | None = None) -> int:
        with console.psql_command(self.require_url(), args) as program:
            return run_client(program)

    @contextmanager
    def tenant(self, *, prefix: str = "") -> Iterator[TenantData]:
        yield PostgresTenant(self.require_url())


class StagedDatabase:
    """A backup restored into a scratch database; switching renames it into place."""

    def __init__(self, staged: pg_backup.Staged, report: Restored) -> None:
        self.staged = staged
        self.report = report
        self.switched: pg_backup.Switched | None = None
        self.previous = pg_backup.aside_name(staged.target)  # named before it exists

    @property
    def scratch_url(self) -> str:
        """Where the staged copy is (to migrate an older schema up before the switch)."""
        return self.staged.scratch

    def journal_record(self) -> dict[str, object]:
        return {**pg_backup.journal_record(self.staged, self.previous),
                "had_target": pg_backup._exists(self.staged.target)}

    def switch(self) -> None:
        self.switched = pg_backup.switch(self.staged, self.previous)

    def undo(self) -> None:
        if self.switched is not None:
            pg_backup.undo(self.switched)

    def commit(self) -> None:
        if self.switched is not None:
            pg_backup.commit(self.switched)

    def discard(self) -> None:
        pg_backup.discard(self.staged)


PG_QUERIES: dict[str, str] = {
    "connections": "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    "index_hit_ratio": (
        "SELECT coalesce(sum(idx_blks_hit)::float8"
        " / nullif(sum(idx_blks_hit) + sum(idx_blks_read), 0), 1)"
        " FROM pg_statio_user_indexes"),
    "table_sizes": (
        "SELECT c.relname, coalesce((SELECT sum(pg_total_relation_size(relid))"
        "  FROM pg_partition_tree(c.oid)), pg_total_relation_size(c.oid))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY 1"),
    "replication": (
        "SELECT application_name, coalesce(client_addr::text, 'local'),"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
        " coalesce(extract(epoch FROM replay_lag), 0)"
        " FROM pg_stat_replication"),
    "standby_lag": (
        "SELECT CASE WHEN pg_is_in_recovery() THEN"
        " coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)"
        " END"),
    "statements": (
        "SELECT coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0), coalesce(sum(calls), 0)"
        " FROM pg_stat_statements"),
}


def replication_summary(url: str) -> str:
    """Replicas and their lag in words; a standby says how far behind it replays."""
    with connect(url, autocommit=True) as conn:
        replicas = conn.execute(PG_QUERIES["replication"]).fetchall()
        standby = conn.execute(PG_QUERIES["standby_lag"]).fetchone()
    parts = []
    if standby and standby[0] is not None:
        parts.append(f"standby, {int(standby[0])} bytes received but not replayed")
    if not replicas:
        parts.append("no replicas")
    else:
        worst = max(float(row[3]) for row in replicas)
        parts.append(f"{len(replicas)} replica{'s' if len(replicas) != 1 else ''}, "
                     f"max lag {worst:.1f} s")
    return ", ".join(parts)


def postgres_metrics(url: str) -> list[Metric]:
    metrics: list[Metric] = []
    with connect(url, autocommit=True) as conn:
        def one(query: str) -> float:
            row = conn.execute(query).fetchone()
            return float(row[0]) if row and row[0] is not None else 0.0

        metrics.append(Metric("postgresql", "connections", one(PG_QUERIES["connections"]),
                              "client connections open now"))
        metrics.append(Metric("postgresql", "index_hit_ratio", one(PG_QUERIES["index_hit_ratio"]),
                              "share of index block reads served from shared buffers"))
        for table, size in conn.execute(PG_QUERIES["table_sizes"]).fetchall():
            metrics.append(Metric("postgresql", "table_size_bytes", float(size or 0),
                                  "table size with indexes, TOAST and partitions",
                                  {"table": str(table)}, "bytes"))
        replicas = conn.execute(PG_QUERIES["replication"]).fetchall()
        metrics.append(Metric("postgresql", "replicas", float(len(replicas)),
                              "streaming replicas connected to this server"))
        worst = max((float(row[3]) for row in replicas), default=0.0)
        metrics.append(Metric("postgresql", "replication_lag_max_seconds", worst,
                              "largest replay lag of any replica (0 with no replicas)",
                              {}, "seconds"))
        for name, addr, lag_bytes, lag_seconds in replicas:
            labels = {"replica": str(name or addr)}
            metrics.append(Metric("postgresql", "replication_lag_bytes", float(lag_bytes or 0),
                                  "WAL bytes the replica has not replayed yet", labels, "bytes"))
            metrics.append(Metric("postgresql", "replication_lag_seconds", float(lag_seconds),
                                  "replay lag reported by the replica", labels, "seconds"))
        standby = conn.execute(PG_QUERIES["standby_lag"]).fetchone()
        if standby and standby[0] is not None:
            metrics.append(Metric("postgresql", "standby_replay_lag_bytes", float(standby[0]),
                                  "WAL received but not replayed (this server is a standby)",
                                  {}, "bytes"))
        if conn.execute("SELECT to_regclass('pg_stat_statements')").fetchone() != (None,):
            mean, calls = conn.execute(PG_QUERIES["statements"]).fetchone() or (0, 0)
            metrics.append(Metric("postgresql", "query_mean_latency_seconds", float(mean) / 1000,
                                  "mean execution time per statement (pg_stat_statements)",
                                  {}, "seconds"))
            metrics.append(Metric("postgresql", "statements", float(calls),
                                  "statements executed (pg_stat_statements)", kind="counter"))
        else:
            probe = timed(lambda: conn.execute("SELECT 1"))
            metrics.append(Metric("postgresql", "query_mean_latency_seconds", probe / 1000,
                                  "round trip of SELECT 1 (pg_stat_statements not installed)",
                                  {"source": "probe"}, "seconds"))
    return metrics

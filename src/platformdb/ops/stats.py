"""The platform's metrics as plain numbers: a list of sources, each read on demand.

Two kinds of source:

- each store's key metrics, the spec's list (the store objects compute them,
  :mod:`platformdb.stores`): PostgreSQL connection count, query latency
  (pg_stat_statements when installed), table sizes, index hit ratio,
  replication; ClickHouse query time, merges, disk and memory; Redis memory,
  hit/miss ratio, command latency, evictions;
- domain metrics, what generic exporters cannot know
  (:mod:`platformdb.ops.domain_metrics`): migrations, backups, sync-daily,
  partitions ahead, queues, rate-limit decisions, cache hit ratio per
  namespace, live sessions, and PgBouncer's pools (:mod:`platformdb.stores.postgres.pgbouncer`);
- per-tenant usage (:mod:`platformdb.ops.tenant_usage`): rows, bytes and keys of the
  largest orgs, bounded to the top N (``StatsConfig.tenant_top``).

Every metric is a :class:`~platformdb.types.Metric` with a name, labels and a
value, so the same list prints as a table, as JSON, or as Prometheus text
(:mod:`platformdb.ops.exporter`). A source that fails is reported (one line) and
the others still run. Adding a source is one entry in :func:`sources` (each
registered store brings its own key metrics and migration state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from platformdb.errors import PlatformDBError
from platformdb.ops import domain_metrics
from platformdb.ops.context import Context, context
from platformdb.ops.domain_metrics import Memo
from platformdb.ops.tenant_usage import usage_metrics
from platformdb.stores import registry
from platformdb.stores.postgres import pgbouncer
from platformdb.types import Endpoints, Metric

__all__ = ["Metric", "Source", "SourceResult", "StatsConfig", "collect", "run", "sources"]


@dataclass
class StatsConfig:
    """What the domain sources need besides the endpoints."""

    backup_dir: Path | None = None
    """Where ``platformdb backup`` writes (its record of the last good backups)."""
    redis_prefix: str = ""
    """The deployment's Redis key prefix (``KeySpace(prefix)``)."""
    queues: tuple[str, ...] = ()
    """Job types to report; empty: every queue found in Redis."""
    scan_interval: float = 60.0
    """Seconds between two walks of the Redis keyspace (live sessions, queue discovery)."""
    memo: Memo = field(default_factory=Memo)
    """Expensive readings kept between scrapes (an exporter keeps one config)."""
    tenant_top: int = 20
    """Per-tenant usage: how many of the largest orgs get series of their own."""


Reader = Callable[[Context, StatsConfig], list[Metric]]
Condition = Callable[[Context, StatsConfig], bool]


def _always(ctx: Context, config: StatsConfig) -> bool:
    return True


@dataclass(frozen=True)
class Source:
    """One reader of metrics. ``store``: the store it reads; the source is skipped when that
    store is not selected, and (unless it is the store's own metrics) when it is not
    available, whose reason the store's own source reports."""

    name: str
    store: str | None
    read: Reader
    own: bool = False
    """The store's own key metrics: its success is ``platformdb_up{store=...}``."""
    applies: Condition = _always
    """Whether the source has anything to read (a backup folder, a PgBouncer)."""


@dataclass(frozen=True)
class SourceResult:
    source: Source
    metrics: list[Metric]
    error: str | None
    seconds: float


def _own(name: str) -> Reader:
    return lambda ctx, config: ctx.store(name).metrics()


def _migrations(name: str) -> Reader:
    return lambda ctx, config: domain_metrics.migration_metrics(ctx.store(name))


def _backups(ctx: Context, config: StatsConfig) -> list[Metric]:
    assert config.backup_dir is not None
    return domain_metrics.backup_metrics(config.backup_dir, registry.names())


def _pgbouncer(ctx: Context, config: StatsConfig) -> list[Metric]:
    assert ctx.endpoints.pgbouncer is not None
    return pgbouncer.pool_metrics(ctx.endpoints.pgbouncer)


def _tenant_usage(ctx: Context, config: StatsConfig) -> list[Metric]:
    return config.memo.get(
        "tenant-usage", config.scan_interval,
        lambda: usage_metrics(ctx, top=config.tenant_top, redis_prefix=config.redis_prefix))


def sources() -> list[Source]:
    """Every source, in order: each registered store's key metrics, then its migrations,
    then the platform's domain sources."""
    return [
        *(Source(name, name, _own(name), own=True) for name in registry.names()),
        *(Source(f"{name}_migrations", name, _migrations(name)) for name in registry.names()),
        Source("backups", None, _backups, applies=lambda ctx, c: c.backup_dir is not None),
        Source("sync_daily", "postgresql",
               lambda ctx, c: domain_metrics.sync_metrics(ctx.url("postgresql"))),
        Source("partitions", "postgresql",
               lambda ctx, c: domain_metrics.partition_metrics(ctx.url("postgresql"))),
        Source("pgbouncer", "postgresql", _pgbouncer,
               applies=lambda ctx, c: ctx.endpoints.pgbouncer is not None),
        Source("redis_domain", "redis", lambda ctx, c: domain_metrics.redis_metrics(
            ctx.url("redis"), prefix=c.redis_prefix, queues=c.queues, memo=c.memo,
            scan_interval=c.scan_interval)),
        Source("tenant_usage", "postgresql", _tenant_usage),
    ]


def _wanted(source: Source, ctx: Context, config: StatsConfig, stores: list[str]) -> bool:
    if not source.applies(ctx, config):
        return False
    if source.store is None:
        return True
    if source.store not in stores:
        return False
    return source.own or ctx.endpoints.url(source.store) is not None


def run(target: Context | Endpoints, stores: list[str] | None = None,
        config: StatsConfig | None = None,
        chosen: list[Source] | None = None) -> list[SourceResult]:
    """Read every source that applies to ``stores`` (default: all), in order."""
    ctx = context(target)
    config = config or StatsConfig()
    selected = registry.check_stores(stores)
    results = []
    for source in chosen if chosen is not None else sources():
        if not _wanted(source, ctx, config, selected):
            continue
        started = time.perf_counter()
        error: str | None = None
        metrics: list[Metric] = []
        try:
            metrics = source.read(ctx, config)
        except (PlatformDBError, OSError, ImportError) as exc:
            error = str(exc)
        except Exception as exc:  # a driver's error is reported, not fatal
            error = f"{type(exc).__name__}: {exc}"
        results.append(SourceResult(source, metrics, error, time.perf_counter() - started))
    return results


def collect(target: Context | Endpoints, stores: list[str] | None = None,
            config: StatsConfig | None = None) -> tuple[list[Metric], list[str]]:
    """Metrics of every source that could be read, and one line per source that could not."""
    metrics: list[Metric] = []
    errors: list[str] = []
    for result in run(target, stores, config):
        metrics.extend(result.metrics)
        if result.error is not None:
            errors.append(f"{result.source.name}: {result.error}")
    return metrics, errors

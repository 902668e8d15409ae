"""Result types shared by every store and command (a leaf: it imports nothing of ours
but :mod:`platformdb.errors`).

Keeping them here lets ``health``, ``stats``, the exporter, the migration engine
and the store objects exchange results without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from platformdb.errors import ConfigError

STORE_NAMES = ("postgresql", "clickhouse", "redis")
"""Every store platformdb owns, in the order commands visit them."""


def check_store(name: str, allowed: tuple[str, ...] = STORE_NAMES) -> str:
    """``name`` if it names a store, else a :class:`ConfigError` (exit 2) listing the choices."""
    if name not in allowed:
        raise ConfigError(f"unknown store {name!r}; choose one of {', '.join(allowed)}")
    return name


def check_stores(names: list[str] | None, allowed: tuple[str, ...] = STORE_NAMES) -> list[str]:
    """The stores a command visits: ``names`` checked and de-duplicated, or all of them."""
    if not names:
        return list(allowed)
    return list(dict.fromkeys(check_store(name, allowed) for name in names))


@dataclass(frozen=True)
class Endpoints:
    """Where each store is, resolved once at the edge (the CLI).

    ``None`` means the store is not available to this command (an embedded
    server that is not running, for commands that never start one).
    """

    postgres: str | None
    clickhouse: str | None
    redis: str | None
    clickhouse_cluster: str | None = None
    why_missing: dict[str, str] = field(default_factory=dict)
    clickhouse_managed: bool = False
    """A managed ClickHouse service: DDL without ``ON CLUSTER`` (which it refuses)."""
    clickhouse_dictionary_login: str | None = None
    """The PostgreSQL login the ClickHouse dictionaries read through (None: provisioned)."""
    home: Path | None = None
    """``$PLATFORMDB_HOME``: where provisioned secrets of the embedded stack live."""
    pgbouncer: str | None = None
    """PgBouncer's admin console (``.../pgbouncer``) when one pools PostgreSQL, for health/stats."""
    """store -> why its URL is None (e.g. "embedded Redis is not running")."""

    def url(self, store: str) -> str | None:
        return {"postgresql": self.postgres, "clickhouse": self.clickhouse,
                "redis": self.redis}[check_store(store)]

    def missing(self, store: str) -> str:
        return self.why_missing.get(store, f"no {store} server is configured")


@dataclass
class StoreHealth:
    """The outcome of one store's health check."""

    store: str
    healthy: bool
    latency_ms: float | None
    target: str
    detail: str
    pending_migrations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    """One measured value of a store, with Prometheus-style labels."""

    store: str
    name: str
    value: float
    help: str
    labels: dict[str, str] = field(default_factory=dict)
    unit: str = ""
    kind: str = "gauge"
    """``gauge`` (a level) or ``counter`` (only grows; Prometheus names it ``..._total``)."""


@dataclass(frozen=True)
class StatusRow:
    """One line of ``migrate status``."""

    version: int
    name: str
    state: str  # applied | pending | edited | missing; repeatable: changed | not on server
    applied_at: datetime | None = None
    duration_ms: int | None = None
    applied_by: str | None = None


@dataclass(frozen=True)
class Step:
    """A migration the engine ran (or would run, in a dry run)."""

    store: str
    direction: str  # up | down
    label: str
    duration_ms: int | None


@dataclass(frozen=True)
class Restored:
    """What a restore loaded into one store, and how it compares to the manifest."""

    store: str
    target: str
    tables: dict[str, Any]
    mismatches: list[str]

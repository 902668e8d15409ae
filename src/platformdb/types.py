"""Result types shared by every store and command (a leaf: it imports nothing of ours).

Keeping them here lets ``health``, ``stats``, the exporter, the migration engine
and the store objects exchange results without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar


class Endpoints:
    """Where each store is, resolved once at the edge (the CLI): the URL of each store by
    its name, and the facts about the deployment the stores are built with.

    A URL of ``None`` means the store is not available to this command (an
    embedded server that is not running, for commands that never start one);
    ``why_missing`` says why. The three platform stores can be given by keyword
    (``Endpoints(postgres=..., clickhouse=..., redis=...)``) and read as
    attributes; any store, a fourth one included, through ``urls`` and :meth:`url`.
    """

    __slots__ = ("clickhouse_cluster", "clickhouse_dictionary_login", "clickhouse_managed",
                 "embedded", "home", "pgbouncer", "urls", "why_missing")
    _NAMED: ClassVar[dict[str, str]] = {
        "postgres": "postgresql", "clickhouse": "clickhouse", "redis": "redis"}

    def __init__(self, postgres: str | None = None, clickhouse: str | None = None,
                 redis: str | None = None, *, urls: Mapping[str, str | None] | None = None,
                 clickhouse_cluster: str | None = None,
                 why_missing: Mapping[str, str] | None = None,
                 clickhouse_managed: bool = False,
                 clickhouse_dictionary_login: str | None = None, home: Path | None = None,
                 pgbouncer: str | None = None, embedded: Iterable[str] = ()) -> None:
        named = {"postgresql": postgres, "clickhouse": clickhouse, "redis": redis}
        merged = {**named, **dict(urls or {})}
        self._set("urls", MappingProxyType(merged))
        self._set("clickhouse_cluster", clickhouse_cluster)
        self._set("why_missing", MappingProxyType(dict(why_missing or {})))
        """store -> why its URL is None (e.g. "embedded Redis is not running")."""
        self._set("clickhouse_managed", clickhouse_managed)
        """A managed ClickHouse service: DDL without ``ON CLUSTER`` (which it refuses)."""
        self._set("clickhouse_dictionary_login", clickhouse_dictionary_login)
        """The PostgreSQL login the ClickHouse dictionaries read through (None: provisioned)."""
        self._set("home", home)
        """``$PLATFORMDB_HOME``: where provisioned secrets of the embedded stack live."""
        self._set("pgbouncer", pgbouncer)
        """PgBouncer's admin console (``.../pgbouncer``) when one pools PostgreSQL."""
        self._set("embedded", frozenset(embedded))
        """The stores the embedded stack serves (their URL was not configured)."""

    urls: Mapping[str, str | None]
    clickhouse_cluster: str | None
    why_missing: Mapping[str, str]
    clickhouse_managed: bool
    clickhouse_dictionary_login: str | None
    home: Path | None
    pgbouncer: str | None
    embedded: frozenset[str]

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Endpoints are resolved once and never changed; use replace()")

    @property
    def postgres(self) -> str | None:
        return self.urls.get("postgresql")

    @property
    def clickhouse(self) -> str | None:
        return self.urls.get("clickhouse")

    @property
    def redis(self) -> str | None:
        return self.urls.get("redis")

    def url(self, store: str) -> str | None:
        return self.urls.get(store)

    def missing(self, store: str) -> str:
        return self.why_missing.get(store, f"no {store} server is configured")

    def replace(self, **changes: Any) -> Endpoints:
        """A copy with ``changes``: fields, or store URLs by keyword (``postgres=...``)."""
        urls = dict(self.urls)
        for keyword, store in self._NAMED.items():
            if keyword in changes:
                urls[store] = changes.pop(keyword)
        urls.update(changes.pop("urls", {}))
        fields = {name: getattr(self, name) for name in self.__slots__ if name != "urls"}
        return Endpoints(urls=urls, **{**fields, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoints) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, v) for k, v in self.urls.items())))

    def __repr__(self) -> str:
        return f"Endpoints(urls={dict(self.urls)!r}, home={self.home!r})"


@dataclass(frozen=True)
class QueryResult:
    """What one statement returned: rows under column names, or a status line."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    status: str = ""


@dataclass(frozen=True)
class ClientProgram:
    """A store's client program to run (psql, valkey-cli): its arguments and environment
    (where the password travels, never in the arguments)."""

    args: list[str]
    env: dict[str, str]


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

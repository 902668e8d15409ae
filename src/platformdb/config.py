"""Configuration from the environment (and an optional `.env` file).

A URL that is set is used as is; a URL that is unset means the embedded
default stack under ``PLATFORMDB_HOME`` (see :mod:`platformdb.embedded`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from platformdb.errors import ConfigError
from platformdb.redaction import redact

ENV_POSTGRES = "PLATFORMDB_POSTGRES_URL"
ENV_CLICKHOUSE = "PLATFORMDB_CLICKHOUSE_URL"
ENV_REDIS = "PLATFORMDB_REDIS_URL"
ENV_HOME = "PLATFORMDB_HOME"
ENV_CLICKHOUSE_MANAGED = "PLATFORMDB_CLICKHOUSE_MANAGED"
ENV_CLICKHOUSE_DICTIONARY = "PLATFORMDB_CLICKHOUSE_DICTIONARY_PG_URL"
ENV_PGBOUNCER = "PLATFORMDB_PGBOUNCER_URL"
ENV_SECRET_KEYS = "PLATFORMDB_SECRET_KEYS"  # noqa: S105 - a variable name, not a key

POSTGRES_SCHEMES = ("postgres", "postgresql")
CLICKHOUSE_SCHEMES = ("http", "https", "chdb")
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix")


@dataclass(frozen=True)
class Settings:
    """Where each store lives. ``None`` means: use the embedded stack."""

    home: Path
    postgres_url: str | None = None
    clickhouse_url: str | None = None
    redis_url: str | None = None
    clickhouse_cluster: str | None = None
    """Render ClickHouse DDL for this cluster (``ON CLUSTER``, Replicated, Distributed)."""
    clickhouse_managed: bool = False
    """A managed ClickHouse (``PLATFORMDB_CLICKHOUSE_MANAGED``): no ``ON CLUSTER``."""
    clickhouse_dictionary_login: str | None = None
    """``PLATFORMDB_CLICKHOUSE_DICTIONARY_PG_URL``: the dictionaries' PostgreSQL login."""
    pgbouncer_url: str | None = None
    """``PLATFORMDB_PGBOUNCER_URL``: PgBouncer's admin console, for health and stats
    (``postgresql://user:password@host:6432/pgbouncer``)."""
    migrate_env: tuple[tuple[str, str], ...] = ()
    """The ``PLATFORMDB_MIGRATE_*`` values (lock timeout, retries...), checked by
    :meth:`platformdb.migrate.options.MigrateOptions.from_env`."""
    secret_keys: str | None = field(default=None, repr=False)
    """``PLATFORMDB_SECRET_KEYS``: the keys that encrypt DSP credentials
    (:class:`platformdb.secrets.KeyRing`); None when unset."""

    @property
    def needs_embedded(self) -> bool:
        return self.postgres_url is None or self.redis_url is None


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse the simple ``KEY=VALUE`` lines of a `.env` file.

    Blank lines and ``#`` comments are skipped, ``export`` prefixes and
    matching quotes are stripped. Nothing is expanded.
    """
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def check_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    """Refuse a URL whose scheme, host or port is plainly wrong, before any connect.

    Multi-host URLs are accepted: ``postgresql://u@db1:5432,db2:5432/db`` (libpq's
    failover list) and ``redis+cluster://u@n1:7000,n2:7001`` (Cluster seeds).
    """
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        for host in hosts.split(",") if "," in hosts else [hosts]:
            _ = urlsplit(f"//{host}").port  # raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc}); fix it or unset it") from exc
    if parts.scheme not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must start with one of {wanted}; got {url.split('://')[0]!r}")
    if parts.scheme not in ("chdb", "unix") and not hosts.split(",")[0] and not parts.query:
        raise ConfigError(f"{name} has no host: {redact(url)}")
    return url


DEV_WORDS = ("dev", "test", "demo", "local", "tmp", "scratch", "sandbox")
"""Words in a database name that say it holds nothing anyone would miss."""


def development_url(url: str) -> bool:
    """A PostgreSQL URL on a loopback host whose database name says dev/test/demo...
    (or a test's ``t_...``): what destructive commands accept without ``--force``."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    name = parts.path.lstrip("/").lower()
    return loopback and (any(word in name for word in DEV_WORDS) or name.startswith("t_"))


def load_settings(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings from ``environ`` (default: the process environment) over `.env`."""
    base = Path.cwd() if cwd is None else cwd
    merged = read_dotenv(base / ".env")
    merged.update(os.environ if environ is None else environ)

    def url(name: str, schemes: tuple[str, ...]) -> str | None:
        value = merged.get(name, "").strip()
        return check_url(name, value, schemes) if value else None

    home = Path(merged.get(ENV_HOME) or base / ".platformdb").expanduser()
    if not home.is_absolute():
        home = base / home
    return Settings(
        home=home,
        postgres_url=url(ENV_POSTGRES, POSTGRES_SCHEMES),
        clickhouse_url=url(ENV_CLICKHOUSE, CLICKHOUSE_SCHEMES),
        redis_url=url(ENV_REDIS, REDIS_SCHEMES),
        clickhouse_cluster=merged.get("PLATFORMDB_CLICKHOUSE_CLUSTER", "").strip() or None,
        clickhouse_managed=merged.get(ENV_CLICKHOUSE_MANAGED, "").strip().lower()
        in ("1", "true", "yes", "on"),
        clickhouse_dictionary_login=url(ENV_CLICKHOUSE_DICTIONARY, POSTGRES_SCHEMES),
        pgbouncer_url=url(ENV_PGBOUNCER, POSTGRES_SCHEMES),
        migrate_env=tuple(sorted((k, v) for k, v in merged.items()
                                 if k.startswith("PLATFORMDB_MIGRATE_"))),
        secret_keys=merged.get(ENV_SECRET_KEYS, "").strip() or None,
    )

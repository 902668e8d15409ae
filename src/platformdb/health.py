"""Health checks: the spec's ``SELECT 1`` / ``SELECT 1`` / ``PING`` with latency,
plus the migration ledgers' state (pending migrations, drift).

A health check never starts anything: an embedded store that is not running is
reported down, not silently started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from platformdb import embedded
from platformdb.config import Settings, mask_password
from platformdb.errors import PlatformDBError


@dataclass
class StoreHealth:
    """The outcome of one store's check."""

    store: str
    healthy: bool
    latency_ms: float | None
    target: str
    detail: str
    pending_migrations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def postgres_url(settings: Settings) -> str | None:
    """The configured URL, or the embedded one when that server is running."""
    if settings.postgres_url:
        return settings.postgres_url
    pg = embedded.EmbeddedPostgres(settings.home)
    return pg.url() if pg.pid() is not None else None


def redis_url(settings: Settings) -> str | None:
    if settings.redis_url:
        return settings.redis_url
    server = embedded.EmbeddedRedis(settings.home)
    return server.url() if server.pid() is not None else None


def _timed(check: Callable[[], None]) -> float:
    started = time.perf_counter()
    check()
    return (time.perf_counter() - started) * 1000


def check_postgres(settings: Settings) -> StoreHealth:
    url = postgres_url(settings)
    if url is None:
        return StoreHealth("postgresql", False, None, "embedded",
                           "embedded PostgreSQL is not running; run `platformdb up`")
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.migrate.postgres import PostgresDriver

    target = mask_password(url)
    try:
        driver = PostgresDriver(url)
    except PlatformDBError as exc:
        return StoreHealth("postgresql", False, None, target, str(exc))
    try:
        latency = _timed(lambda: driver.ping())
        migrator = Migrator(driver, discover(migrations_dir("postgresql")))
        rows = migrator.status()
        problems = migrator.problems(driver.applied())
    except PlatformDBError as exc:
        return StoreHealth("postgresql", False, None, target, str(exc))
    finally:
        driver.close()
    pending = [f"{r.version:03d}_{r.name}" for r in rows if r.state == "pending"]
    healthy = not problems and not pending
    detail = "ok" if healthy else (
        problems[0] if problems else f"{len(pending)} pending migration(s)")
    return StoreHealth("postgresql", healthy, round(latency, 2), target, detail, pending, problems)


def check_redis(settings: Settings) -> StoreHealth:
    url = redis_url(settings)
    if url is None:
        return StoreHealth("redis", False, None, "embedded",
                           "embedded Redis is not running; run `platformdb up`")
    import redis
    from platformdb.migrate import redis as redis_scripts
    from platformdb.redis import connect

    target = mask_password(url)
    client = connect(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        latency = _timed(lambda: _ping(client))
        scripts = redis_scripts.status(client)
    except redis.RedisError as exc:
        return StoreHealth("redis", False, None, target, f"PING failed: {exc}")
    except PlatformDBError as exc:  # the script ledger could not be read
        return StoreHealth("redis", False, None, target, str(exc))
    finally:
        client.close()
    # A script that is only missing reloads itself on first use (NOSCRIPT);
    # one loaded at another version than the files is a problem.
    pending = [f"script {s.name}" for s in scripts if s.state in ("pending", "not on server")]
    problems = redis_scripts.verify_rows(scripts)
    detail = problems[0] if problems else (
        f"ok ({len(pending)} script(s) not loaded yet; `platformdb migrate up` loads them)"
        if pending else "ok")
    return StoreHealth("redis", not problems, round(latency, 2), target, detail, pending, problems)


def _ping(client: object) -> None:
    if client.ping() is not True:  # type: ignore[attr-defined]
        raise RuntimeError("PING did not answer PONG")


def check_clickhouse(settings: Settings) -> StoreHealth:
    """``SELECT 1`` on ClickHouse (chDB or a server), plus its ledger state."""
    from platformdb.clickhouse import target_of
    from platformdb.clickhouse.health import check

    return check(target_of(settings))


CHECKS: dict[str, Callable[[Settings], StoreHealth]] = {
    "postgresql": check_postgres,
    "clickhouse": check_clickhouse,
    "redis": check_redis,
}


def check(settings: Settings, stores: list[str] | None = None) -> list[StoreHealth]:
    """Run the checks of ``stores`` (default: all) and return their outcomes."""
    return [CHECKS[name](settings) for name in (stores or list(CHECKS))]

"""``platformdb health`` for ClickHouse: ``SELECT 1`` with latency, plus the ledger state."""

from __future__ import annotations

import time

from platformdb.clickhouse import target_of
from platformdb.config import Settings
from platformdb.errors import PlatformDBError
from platformdb.health import StoreHealth


def check(settings: Settings) -> StoreHealth:
    from platformdb.migrate import open_migrator

    target = target_of(settings)
    try:
        with open_migrator("clickhouse", settings) as migrator:
            started = time.perf_counter()
            migrator.driver.ping()
            latency = (time.perf_counter() - started) * 1000
            rows = migrator.status()
            problems = migrator.problems(migrator.driver.applied())
    except PlatformDBError as exc:
        return StoreHealth("clickhouse", False, None, target, str(exc))
    pending = [f"{r.version:03d}_{r.name}" for r in rows if r.state == "pending"]
    healthy = not problems and not pending
    detail = "ok" if healthy else (
        problems[0] if problems else f"{len(pending)} pending migration(s)")
    return StoreHealth("clickhouse", healthy, round(latency, 2), target, detail, pending, problems)

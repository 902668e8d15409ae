"""``platformdb health`` for ClickHouse: ``SELECT 1`` with latency, plus the ledger state."""

from __future__ import annotations

import time

from platformdb.clickhouse import connect
from platformdb.config import mask_password
from platformdb.errors import PlatformDBError
from platformdb.health import StoreHealth

WAIT = 5.0
"""Seconds health waits for a chDB path another process has open."""


def check(url: str) -> StoreHealth:
    """``SELECT 1`` on the ClickHouse at ``url`` and its pending migrations."""
    # the migration engine reads the ledger; the store registry (issue 10) will own this link
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.migrate.clickhouse import ClickHouseDriver

    target = mask_password(url)
    try:
        with connect(url, wait=WAIT) as client:
            migrator = Migrator(ClickHouseDriver(client), discover(migrations_dir("clickhouse")))
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

"""Replication lag from a real streaming standby on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from platformdb import embedded
from platformdb.stores.postgres import postgres_metrics


@pytest.fixture
def primary_and_standby(cluster_dir: Path) -> Iterator[tuple[embedded.EmbeddedPostgres,
                                                          embedded.EmbeddedPostgres]]:
    ids = embedded.run_as()
    primary = embedded.EmbeddedPostgres(cluster_dir / "primary")
    standby = embedded.EmbeddedPostgres(cluster_dir / "standby")
    try:
        primary.init(ids)
        primary.start(ids)
        standby.init_standby(primary, ids)
        standby.start(ids)
        yield primary, standby
    finally:
        standby.stop(ids)
        primary.stop(ids)


def lag_bytes(url: str) -> float | None:
    values = [m.value for m in postgres_metrics(url) if m.name == "replication_lag_bytes"]
    return values[0] if values else None


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_replication_lag_rises_while_replay_is_paused_and_returns_to_zero(
        primary_and_standby: tuple[embedded.EmbeddedPostgres, embedded.EmbeddedPostgres]) -> None:
    primary, standby = primary_and_standby
    assert wait_for(lambda: lag_bytes(primary.url()) is not None), "standby never connected"
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        conn.execute("SELECT pg_wal_replay_pause()")
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE lag_probe AS SELECT g AS n FROM generate_series(1, 50000) g")
    assert wait_for(lambda: (lag_bytes(primary.url()) or 0) > 0), "lag never rose above 0"

    def standby_lag() -> float:
        values = [m.value for m in postgres_metrics(standby.url())
                  if m.name == "standby_replay_lag_bytes"]
        return values[0] if values else 0.0

    assert wait_for(lambda: standby_lag() > 0), "the standby never reported unreplayed WAL"
    with psycopg.connect(standby.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")
    assert wait_for(lambda: lag_bytes(primary.url()) == 0), "lag never returned to 0"
    assert wait_for(lambda: standby_lag() == 0)

    def replayed() -> bool:  # lag is sampled; the last records may still be applying
        with psycopg.connect(standby.url(), autocommit=True) as conn:
            return conn.execute("SELECT to_regclass('lag_probe') IS NOT NULL AND"
                                " (SELECT count(*) FROM pg_class WHERE relname = 'lag_probe') = 1"
                                ).fetchone() == (True,)

    assert wait_for(replayed), "the standby never replayed the table"
    with psycopg.connect(standby.url()) as conn:
        assert conn.execute("SELECT count(*) FROM lag_probe").fetchone() == (50000,)

"""The tenant context counts only in the transaction that set it, and pools leave nothing behind.

A session-level value (``SET``, ``set_config(..., false)``), a ``SET LOCAL``
without ``set_tenant``, or a value left by an earlier transaction must see
nothing and write nothing; pooled connections come back reset; a URL source
shares one pool instead of opening a connection per call. Blocking and
asyncio sides alike.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from platformdb.postgres import (
    APP_ROLE,
    async_close_shared_pools,
    async_shared_pool,
    async_tenant_connection,
    async_tenant_transaction,
    close_shared_pools,
    create_async_pool,
    create_pool,
    shared_pool,
    tenant_connection,
    tenant_transaction,
)
from tests.postgres.test_tenancy import TENANT_TABLES, key, seed_org

ORG_A = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
ORG_B = uuid.UUID("00000000-0000-4000-8000-0000000000b1")

# Ways to put a tenant in the session without set_tenant() in the transaction
# that reads: each must be ignored once its own statement or transaction ends.
SESSION_LEVEL = {
    "SET": ["SET app.current_org_id = '{org}'"],
    "set_config(false)": ["SELECT set_config('app.current_org_id', '{org}', false)"],
    "SET with a forged binding": [
        "SET app.current_org_id = '{org}'",
        "SELECT set_config('app.tenant_txn', tenant_txn_key(), false)",
    ],
    "set_tenant, then session SET in that transaction": [
        "BEGIN", "SELECT set_tenant('{org}')", "SET app.current_org_id = '{org}'", "COMMIT",
    ],
}


@pytest.fixture
def two_orgs(migrated_url: str) -> Iterator[str]:
    with psycopg.connect(migrated_url) as conn:
        seed_org(conn, ORG_A, "a")
        seed_org(conn, ORG_B, "b")
    yield migrated_url


def visible_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    counts = {}
    for table in TENANT_TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(table))).fetchone()
        counts[table] = row[0] if row else -1
    return counts


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(sorted(SESSION_LEVEL)), org=st.sampled_from([ORG_A, ORG_B]))
@pytest.mark.slow
def test_a_session_level_tenant_sees_nothing_and_writes_nothing(
        two_orgs: str, how: str, org: uuid.UUID) -> None:
    with psycopg.connect(two_orgs, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
        for statement in SESSION_LEVEL[how]:
            conn.execute(statement.format(org=org).encode())
        assert conn.execute("SELECT current_org_id()").fetchone() == (None,)
        with conn.transaction():  # a later transaction on the same (pooled) connection
            assert set(visible_rows(conn).values()) == {0}, how
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("INSERT INTO campaigns (org_id, name) VALUES (%s, 'leak')", (org,))


def test_set_local_without_set_tenant_is_not_a_tenant(two_orgs: str) -> None:
    with psycopg.connect(two_orgs) as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(APP_ROLE)))
        conn.execute(sql.SQL("SET LOCAL app.current_org_id = {}").format(sql.Literal(str(ORG_A))))
        assert set(visible_rows(conn).values()) == {0}


@pytest.mark.slow
def test_set_tenant_scopes_exactly_its_transaction(two_orgs: str) -> None:
    with psycopg.connect(two_orgs, autocommit=True) as conn:
        with tenant_transaction(conn, ORG_A, role=APP_ROLE):
            seen = visible_rows(conn)
            assert all(n >= 1 for n in seen.values()), seen
            rows = conn.execute("SELECT DISTINCT org_id FROM campaigns").fetchall()
            assert rows == [(ORG_A,)]
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
        assert conn.execute("SELECT current_org_id(), current_app_user_id()").fetchone() == (
            None, None)
        with conn.transaction():
            assert set(visible_rows(conn).values()) == {0}


def test_a_rolled_back_tenant_transaction_leaves_no_tenant(two_orgs: str) -> None:
    with psycopg.connect(two_orgs, autocommit=True) as conn:
        with pytest.raises(RuntimeError), tenant_transaction(conn, ORG_A, role=APP_ROLE):
            raise RuntimeError("boom")
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
        assert visible_rows(conn)["campaigns"] == 0


@pytest.mark.slow
def test_the_transaction_binding_is_read_from_memory_not_an_xid(two_orgs: str) -> None:
    """A read-only tenant transaction gets no transaction id (works on a hot standby)."""
    with (psycopg.connect(two_orgs, autocommit=True) as conn,
          tenant_transaction(conn, ORG_A, role=APP_ROLE)):
        visible_rows(conn)
        assert conn.execute("SELECT txid_current_if_assigned()").fetchone() == (None,)


# ------------------------------------------------------------------- pools

DIRTY = [
    "SET app.current_org_id = '{org}'",
    "SELECT set_config('app.tenant_txn', tenant_txn_key(), false)",
    "SET statement_timeout = '1234s'",
    "SELECT pg_advisory_lock(4242)",
    "CREATE TEMP TABLE leftover (x int)",
    "LISTEN leftover_channel",
    "SET ROLE " + APP_ROLE,
]
STATE = ("SELECT current_setting('app.current_org_id', true),"
         " current_setting('statement_timeout'), current_user = session_user,"
         " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),"
         " to_regclass('pg_temp.leftover'), (SELECT count(*) FROM pg_listening_channels())")
CLEAN = ("", "0", True, 0, None, 0)


@pytest.mark.slow
def test_a_pool_resets_what_a_borrower_left_on_the_connection(two_orgs: str) -> None:
    with create_pool(two_orgs, min_size=1, max_size=1) as pool:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.autocommit = True
            for statement in DIRTY:
                conn.execute(statement.format(org=ORG_A).encode())
            conn.autocommit = False
        with pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same server session, reset
            assert conn.execute(STATE).fetchone() == CLEAN


@pytest.mark.slow
def test_an_async_pool_resets_what_a_borrower_left_on_the_connection(two_orgs: str) -> None:
    async def scenario() -> tuple[Any, ...] | None:
        async with create_async_pool(two_orgs, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
                await conn.set_autocommit(True)
                for statement in DIRTY:
                    await conn.execute(statement.format(org=ORG_A).encode())
                await conn.set_autocommit(False)
            async with pool.connection() as conn:
                assert conn.info.backend_pid == pid
                cur = await conn.execute(STATE)
                return await cur.fetchone()

    assert asyncio.run(scenario()) == CLEAN


def sessions(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                           ).fetchone()
    return row[0] if row else -1


@pytest.mark.slow
def test_a_url_source_shares_one_pool_instead_of_a_connection_per_call(two_orgs: str) -> None:
    backends = set()
    try:
        for _ in range(30):
            with tenant_connection(two_orgs, ORG_A, role=APP_ROLE) as conn:
                backends.add(conn.info.backend_pid)
                assert conn.execute("SELECT DISTINCT org_id FROM campaigns").fetchall() == [
                    (ORG_A,)]
        pool = shared_pool(two_orgs)
        assert pool is shared_pool(two_orgs)
        # a few pooled sessions at most (the pool grows while it resets a returned one)
        assert len(backends) <= pool.max_size < 30
        assert sessions(two_orgs) <= pool.max_size
    finally:
        close_shared_pools()


@pytest.mark.slow
def test_async_tenant_connection_scopes_and_shares_a_pool(two_orgs: str) -> None:
    async def scenario() -> tuple[set[Any], list[Any], Any]:
        backends = set()
        seen = []
        try:
            for org in [ORG_A, ORG_B] * 10:
                async with async_tenant_connection(two_orgs, org, role=APP_ROLE) as conn:
                    backends.add(conn.info.backend_pid)
                    cur = await conn.execute("SELECT DISTINCT org_id FROM campaigns")
                    seen.append(await cur.fetchall())
            same = await async_shared_pool(two_orgs) is await async_shared_pool(two_orgs)
            async with async_tenant_connection(two_orgs, ORG_A, role=APP_ROLE) as conn:
                conn.add_notice_handler(lambda _: None)
                await conn.execute(sql.SQL("SET app.current_org_id = {}").format(
                    sql.Literal(str(ORG_B))))  # session level: must not survive
            async with (await async_shared_pool(two_orgs)).connection() as conn:
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
                cur = await conn.execute("SELECT count(*) FROM campaigns")
                after = (same, await cur.fetchone())
        finally:
            await async_close_shared_pools()
        return backends, seen, after

    backends, seen, after = asyncio.run(scenario())
    assert len(backends) <= 10 < 20  # the shared pool's max_size, not one per call
    assert seen == [[(ORG_A,)], [(ORG_B,)]] * 10
    assert after == (True, (0,))


@pytest.mark.slow
def test_async_tenant_transaction_refuses_to_nest_and_rolls_back(two_orgs: str) -> None:
    from platformdb.errors import ValidationError

    async def scenario() -> int:
        conn = await psycopg.AsyncConnection.connect(two_orgs)
        try:
            with pytest.raises(RuntimeError):
                async with async_tenant_transaction(conn, ORG_A, role=APP_ROLE):
                    await conn.execute("DELETE FROM campaigns")
                    raise RuntimeError("boom")
            await conn.execute("SELECT 1")  # opens a transaction
            with pytest.raises(ValidationError, match="must start the transaction"):
                async with async_tenant_transaction(conn, ORG_A):
                    pass
            await conn.rollback()
            async with async_tenant_transaction(conn, ORG_A, role=APP_ROLE):
                cur = await conn.execute("SELECT count(*) FROM campaigns")
                row = await cur.fetchone()
            return row[0] if row else -1
        finally:
            await conn.close()

    assert asyncio.run(scenario()) == 1  # the delete was rolled back


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.uuids())
@pytest.mark.slow
def test_any_tenant_sees_only_its_rows_through_the_async_api(two_orgs: str,
                                                            tenant: uuid.UUID) -> None:
    async def scenario() -> list[Any]:
        async with (create_async_pool(two_orgs, max_size=2) as pool,
                    async_tenant_connection(pool, tenant, role=APP_ROLE) as conn):
            found = []
            for table in TENANT_TABLES:
                cur = await conn.execute(sql.SQL("SELECT DISTINCT {} FROM {}").format(
                    key(table), sql.Identifier(table)))
                found += [r[0] for r in await cur.fetchall()]
            return found

    assert all(org == tenant for org in asyncio.run(scenario()))

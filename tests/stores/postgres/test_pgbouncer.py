"""PgBouncer as the spec prescribes: the tenant and pool guarantees hold through transaction
pooling, with one login per service; `up` runs it, `down` stops it, health and stats see it.

The tenant tests run twice (``service_route``): straight to PostgreSQL and through the
embedded stack's PgBouncer, as the ``svc_api`` login. Without a pgbouncer binary the
PgBouncer half skips and says why (.ci/run installs Debian's package where it can).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from platformdb import binaries, embedded
from platformdb.ops.health import check
from platformdb.ops.stats import collect
from platformdb.postgres import create_pool, tenant_connection
from platformdb.stores.postgres import pgbouncer
from platformdb.types import Endpoints
from tests.conftest import create_database, drop_database, fresh_name, with_database
from tests.postgres.test_tenancy import seed_org

ORG_A = uuid.UUID("00000000-0000-4000-8000-0000000000a7")
ORG_B = uuid.UUID("00000000-0000-4000-8000-0000000000b7")
needs_pgbouncer = pytest.mark.skipif(binaries.pgbouncer() is None,
                                     reason="pgbouncer not installed "
                                            f"({binaries.PGBOUNCER_INSTALL_HINT})")


@pytest.fixture(scope="module")
def embedded_template(stack_home: Path) -> Iterator[str]:
    """A migrated database on the embedded server (the one PgBouncer pools)."""
    from platformdb.migrate import Migrator, discover, migrations_dir
    from platformdb.stores.postgres.driver import PostgresDriver

    admin = embedded.EmbeddedPostgres(stack_home).url("postgres")
    name = fresh_name("tplb")
    driver = PostgresDriver(create_database(admin, name))
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
    finally:
        driver.close()
    yield name
    drop_database(admin, name)


@pytest.fixture
def two_orgs(stack_home: Path, embedded_template: str,
             service_route: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """(owner URL, the service's URL) of a fresh database with two organizations."""
    admin = embedded.EmbeddedPostgres(stack_home).url("postgres")
    name = fresh_name("tb")
    owner = create_database(admin, name, template=embedded_template)
    try:
        with psycopg.connect(owner) as conn:
            seed_org(conn, ORG_A, "a")
            seed_org(conn, ORG_B, "b")
        yield owner, service_route(owner)
    finally:
        drop_database(admin, name)


def orgs_seen(conn: psycopg.Connection[Any]) -> set[uuid.UUID]:
    return {row[0] for row in conn.execute("SELECT org_id FROM campaigns").fetchall()}


@pytest.mark.slow
def test_the_service_login_holds_its_role_and_nothing_more(two_orgs: tuple[str, str]) -> None:
    _, url = two_orgs
    with psycopg.connect(url, prepare_threshold=None) as conn:
        row = conn.execute("SELECT current_user, pg_has_role('platform_app', 'member'),"
                           " rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
                           ).fetchone()
    assert row == ("svc_api", True, False, False)


def test_a_pool_never_carries_a_tenant_across_transactions(two_orgs: tuple[str, str]) -> None:
    """Many threads, each transaction a random tenant (or none), on a small pool: every
    transaction sees exactly its own tenant's rows, whichever server connection it got."""
    _, url = two_orgs
    wrong: list[str] = []
    with create_pool(url, min_size=2, max_size=3, prepare_threshold=None) as pool:
        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(25):
                org = rng.choice([ORG_A, ORG_B, None])
                if org is None:
                    with pool.connection() as conn:
                        if orgs_seen(conn):
                            wrong.append("a transaction without a tenant saw rows")
                    continue
                with tenant_connection(pool, org) as conn:
                    seen = orgs_seen(conn)
                    if seen != {org}:
                        wrong.append(f"{org} saw {seen}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert wrong == []


def test_a_session_level_tenant_is_not_honoured(two_orgs: tuple[str, str]) -> None:
    """`SET app.current_org_id` outside set_tenant() sees nothing; through PgBouncer it lands
    on whichever server connection ran it, and must not leak to the next statement either."""
    _, url = two_orgs
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(f"SET app.current_org_id = '{ORG_A}'")
        assert orgs_seen(conn) == set()
        conn.execute(f"SELECT set_config('app.current_org_id', '{ORG_B}', false)")
        assert orgs_seen(conn) == set()
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as other:
        assert orgs_seen(other) == set()


def test_prepared_statements_work_or_are_refused_as_documented(
        two_orgs: tuple[str, str], service_route: Callable[[str], str]) -> None:
    """psycopg prepares a statement after a few runs. Through PgBouncer < 1.21 (no
    max_prepared_statements) a later transaction may land on a server connection that never
    saw it: docs/OPERATIONS.md says to pass prepare_threshold=None. With it, or straight to
    PostgreSQL, or PgBouncer 1.21+, the same sequence works."""
    _, url = two_orgs
    tracked = service_route.kind == "direct" or pgbouncer.supports_prepared_statements(  # type: ignore[attr-defined]
        pgbouncer.version(binaries.pgbouncer() or Path("pgbouncer")))

    def sequence(prepare_threshold: int | None) -> None:
        with psycopg.connect(url, prepare_threshold=prepare_threshold) as first, \
                psycopg.connect(url, prepare_threshold=None) as second:
            with first.transaction():
                first.execute("SELECT count(*) FROM permissions WHERE code <> %s", ("x",))
            with second.transaction():  # holds the server connection the statement was made on
                second.execute("SELECT 1")
                with first.transaction():
                    first.execute("SELECT count(*) FROM permissions WHERE code <> %s", ("x",))

    sequence(None)
    if tracked:
        sequence(0)
    else:
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            sequence(0)


# ------------------------------------------------------------------ the embedded PgBouncer


def test_config_is_transaction_pooling_with_scram_and_no_reset_query() -> None:
    old = pgbouncer.config_text("postgresql://u:p@db.internal:5433/platform",
                                pgbouncer_version=(1, 18))
    assert "platform = host=db.internal port=5433 dbname=platform" in old
    lines = set(old.splitlines())
    assert {"pool_mode = transaction", "server_reset_query =", "auth_type = scram-sha-256",
            f"admin_users = {pgbouncer.ADMIN_USER}"} <= lines
    assert "max_prepared_statements = 200" not in lines  # 1.18 does not know it
    assert "max_prepared_statements = 200" in pgbouncer.config_text(
        "postgresql://u:p@h/platform", pgbouncer_version=(1, 21)).splitlines()
    assert "p@" not in old  # no credential in the file


@needs_pgbouncer
@pytest.mark.slow
def test_up_runs_pgbouncer_in_front_of_postgres_and_down_stops_it(
        cluster_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = cluster_dir / "home"
    try:
        states = {s.name: s for s in embedded.up(home, redis=False)}
        bouncer = embedded.EmbeddedPgBouncer(home)
        assert states["pgbouncer"].running and states["pgbouncer"].port == bouncer.port
        pid = bouncer.pid()
        secret = pgbouncer.secret_file(home, "svc_api")
        assert secret.stat().st_mode & 0o777 == 0o600
        assert bouncer.userlist.stat().st_mode & 0o777 == 0o600
        assert pgbouncer.read_password(home, "svc_api") not in bouncer.userlist.read_text()
        with psycopg.connect(bouncer.url("svc_etl", "platform_dev"),
                             prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("svc_etl",)
        embedded.up(home, redis=False)
        assert bouncer.pid() == pid  # idempotent: the same process, files unchanged
        found = Endpoints(postgres=embedded.EmbeddedPostgres(home).url(), clickhouse=None,
                          redis=None, pgbouncer=bouncer.admin_url())
        health = {r.store: r for r in check(found, ["postgresql"])}
        assert health["pgbouncer"].healthy and "transaction pooling" in health["pgbouncer"].detail
        assert health["postgresql"].detail.endswith("no replicas)") or "no replicas" in \
            health["postgresql"].detail
        metrics, errors = collect(found, ["postgresql"])
        assert not [e for e in errors if e.startswith("pgbouncer")]
        names = {m.name for m in metrics if m.store == "pgbouncer"}
        assert {"clients_waiting", "server_connections", "pool_clients_waiting"} <= names
        assert "pgbouncer" in embedded.down(home)
        assert bouncer.pid() is None
        down = check(found, ["postgresql"])
        assert not next(r for r in down if r.store == "pgbouncer").healthy
        # a PgBouncer that cannot start leaves PostgreSQL up and says why
        monkeypatch.setattr(pgbouncer, "config_text", lambda *a, **k: "[pgbouncer]\nnonsense\n")
        states = {s.name: s for s in embedded.up(home, redis=False)}
        assert states["postgresql"].running and not states["pgbouncer"].running
        assert states["pgbouncer"].detail.startswith("stopped: embedded PgBouncer did not start")
        monkeypatch.undo()
        assert {s.name: s for s in embedded.up(home, redis=False)}["pgbouncer"].running
    finally:
        embedded.down(home)


def test_health_and_stats_of_the_stack_show_its_pgbouncer(stack_home: Path) -> None:
    bouncer = embedded.EmbeddedPgBouncer(stack_home)
    if bouncer.pid() is None:
        pytest.skip(f"pgbouncer not installed ({binaries.PGBOUNCER_INSTALL_HINT})")
    from platformdb.config import Settings

    found = embedded.endpoints(Settings(home=stack_home), start=False, stores=["postgresql"])
    assert found.pgbouncer == bouncer.admin_url()
    rows = [r.store for r in check(found, ["postgresql"])]
    assert rows == ["postgresql", "pgbouncer"]
    status = {s.name: s for s in embedded.status(stack_home)}
    assert status["pgbouncer"].running and status["pgbouncer"].detail.startswith("running")
    # every configured database has its counters before any client used it (rate() needs a start)
    counted = {m.labels["database"] for m in pgbouncer.pool_metrics(bouncer.admin_url())
               if m.name == "transactions"}
    configured = {str(r["name"]) for r in pgbouncer.console(bouncer.admin_url(), "SHOW DATABASES")}
    assert configured - {"pgbouncer"} <= counted and "platform_dev" in counted


def test_the_admin_console_user_cannot_reach_a_database(stack_home: Path) -> None:
    bouncer = embedded.EmbeddedPgBouncer(stack_home)
    if bouncer.pid() is None:
        pytest.skip(f"pgbouncer not installed ({binaries.PGBOUNCER_INSTALL_HINT})")
    console_url = bouncer.admin_url()
    database_url = with_database(console_url, "platform_dev")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(database_url, connect_timeout=5).close()

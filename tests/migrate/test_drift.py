"""Drift, baseline and the recorded fingerprint, on real PostgreSQL and ClickHouse (chDB).

The live schema is compared object by object with what the migrations build in a
scratch database; each hand-made production change is named precisely.
"""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest
from clickhouse_connect.driver import Client

from platformdb.binaries import pg_tool
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.engine import SchemaDiffers
from platformdb.migrate.snapshot import Difference
from platformdb.stores import PostgresStore
from platformdb.stores.postgres.driver import LEDGER, PostgresDriver
from tests.clickhouse.conftest import MIGRATIONS as CH_MIGRATIONS
from tests.clickhouse.conftest import driver_for
from tests.test_cli import cli

PG_MIGRATIONS = discover(migrations_dir("postgresql"))


def drift_of(url: str) -> list[Difference]:
    driver = PostgresDriver(url)
    try:
        return Migrator(driver, PG_MIGRATIONS).drift()
    finally:
        driver.close()


def run(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def by_object(found: list[Difference]) -> dict[str, Difference]:
    return {d.object: d for d in found}


@pytest.mark.slow
def test_a_migrated_database_has_no_drift_whatever_months_exist(migrated_copy: str) -> None:
    """Monthly partitions made later by ensure_date_partitions (and old ones dropped by
    retention) are not drift."""
    run(migrated_copy,
        "SELECT ensure_date_partitions('campaign_metrics', (current_date + 400)::date, 3)",
        "SELECT ensure_date_partitions('audit_logs', (current_date + 400)::date, 2)",
        "SELECT drop_date_partitions_before('campaign_metrics',"
        " date_trunc('month', current_date)::date)")
    assert drift_of(migrated_copy) == []


@pytest.mark.slow
def test_each_hand_made_change_is_named(migrated_copy: str) -> None:
    with psycopg.connect(migrated_copy) as conn:
        month = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relname ~ '^campaign_metrics_y[0-9]{4}m"
            "[0-9]{2}_h0$' ORDER BY 1 LIMIT 1").fetchone()
    assert month is not None
    run(migrated_copy,
        "CREATE INDEX idx_campaigns_extra ON public.campaigns (name)",
        "DROP POLICY campaigns_tenant_isolation ON public.campaigns",
        "GRANT SELECT (password_hash) ON public.users TO platform_app",
        "REVOKE SELECT ON public.campaign_metrics FROM platform_readonly",
        "CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql"
        " SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NEW; END $$",
        "ALTER FUNCTION public.validate_auth_token(text) RESET search_path",
        "ALTER TABLE public.notifications NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE partitions.{month[0]} NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE public.campaigns DISABLE TRIGGER trg_campaigns_audit",
        "ALTER TABLE public.campaigns ALTER COLUMN status SET DEFAULT 'active'",
        "CREATE OR REPLACE VIEW public.user_permissions WITH (security_invoker = true) AS"
        " SELECT ur.org_id, ur.user_id, ur.role, ''::varchar(100) AS permission"
        " FROM public.user_roles ur",
        "ALTER TABLE public.organizations DROP CONSTRAINT chk_organizations_name")
    found = by_object(drift_of(migrated_copy))
    expected = {
        "index public.idx_campaigns_extra": "unexpected",
        "policy public.campaigns.campaigns_tenant_isolation": "missing",
        "column public.users.password_hash": "changed",
        "table public.campaign_metrics": "changed",
        "function public.set_updated_at()": "changed",
        "function public.validate_auth_token(p_token_hash text)": "changed",
        "table public.notifications": "changed",
        "table partitions.campaign_metrics_y*m*_h0": "changed",
        "trigger public.campaigns.trg_campaigns_audit": "changed",
        "column public.campaigns.status": "changed",
        "view public.user_permissions": "changed",
        "constraint public.organizations.chk_organizations_name": "missing",
    }
    assert {key: d.change for key, d in found.items()} == expected
    assert "platform_app: SELECT" in found["column public.users.password_hash"].detail
    assert "platform_readonly" in found["table public.campaign_metrics"].detail
    assert "definition differs" in found["function public.set_updated_at()"].detail
    assert "search_path" in found["function public.validate_auth_token(p_token_hash text)"].detail
    assert "rls: expected enabled, forced, live enabled" in \
        found["table public.notifications"].detail
    # the one month that differs is named, the others are fine
    assert f"partitions.{month[0]}" in found["table partitions.campaign_metrics_y*m*_h0"].detail
    assert "enabled: expected enabled, live disabled" in \
        found["trigger public.campaigns.trg_campaigns_audit"].detail


@pytest.mark.slow
def test_health_notices_drift_from_the_recorded_fingerprint(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.migrate_up()
    healthy = store.health()
    assert healthy.healthy, healthy.detail
    started = time.perf_counter()
    store.health()
    assert time.perf_counter() - started < 2  # no scratch database: one snapshot
    run(pg_url, "CREATE INDEX idx_users_extra ON public.users (name)")
    sick = store.health()
    assert not sick.healthy
    assert any("schema drift: the live schema changed since its fingerprint was recorded by"
               " migrate up" in p for p in sick.problems)
    # verify --drift lists it and keeps the store unhealthy until it is gone
    assert [d.object for d in drift_of(pg_url)] == ["index public.idx_users_extra"]
    assert "1 difference(s) found by migrate verify --drift" in store.health().detail
    run(pg_url, "DROP INDEX public.idx_users_extra")
    assert store.health().problems != []  # still flagged: nobody verified yet
    assert drift_of(pg_url) == []
    assert store.health().healthy


@pytest.mark.slow
def test_migrate_up_over_drift_keeps_it_flagged(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.migrate_up(target=7)
    run(pg_url, "DROP POLICY notifications_tenant_isolation ON public.notifications")
    store.migrate_up()
    assert any("the live schema had changed before migrate up" in p
               for p in store.health().problems)


@pytest.mark.slow
def test_verify_drift_through_the_cli(migrated_copy: str) -> None:
    env = {"PLATFORMDB_POSTGRES_URL": migrated_copy}
    clean = cli("migrate", "verify", "--store", "postgresql", "--drift", env=env)
    assert clean.returncode == 0, clean.stderr
    assert "the live schema is what they build" in clean.stdout
    run(migrated_copy, "DROP POLICY users_tenant_isolation ON public.users",
        "CREATE INDEX idx_extra ON public.campaigns (currency)")
    result = cli("migrate", "verify", "--store", "postgresql", "--drift", env=env)
    assert result.returncode == 1
    assert "2 schema difference(s); first postgresql: index public.idx_extra" in result.stderr
    assert "policy public.users.users_tenant_isolation: missing" in result.stderr
    as_json = cli("migrate", "verify", "--store", "postgresql", "--drift", "--json", env=env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert [d["object"] for d in report["drift"]["postgresql"]] == [
        "index public.idx_extra", "policy public.users.users_tenant_isolation"]


# ------------------------------------------------------------------ baseline


def psql_f(url: str, *files: str) -> None:
    """The spec's set-up: plain `psql -f` of migration files, no engine, no ledger."""
    for name in files:
        path = migrations_dir("postgresql") / name
        result = subprocess.run([pg_tool("psql", url), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                 "-d", url, "-f", str(path)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_database_built_with_psql_is_baselined_then_migrated(pg_url: str) -> None:
    psql_f(pg_url, "001_init_schema.sql", "002_seed_data.sql")
    env = {"PLATFORMDB_POSTGRES_URL": pg_url}
    result = cli("migrate", "baseline", "--to", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["postgresql: baselined 001_init_schema",
                                          "postgresql: baselined 002_seed_data"]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f"SELECT version, baselined FROM {LEDGER} ORDER BY 1").fetchall()
    assert rows == [(1, True), (2, True)]
    status = json.loads(cli("migrate", "status", "-s", "postgresql", "--json", env=env).stdout)
    assert [r["state"] for r in status["postgresql"]][:3] == ["baselined", "baselined",
                                                              "pending"]
    assert cli("migrate", "up", "-s", "postgresql", env=env).returncode == 0
    assert drift_of(pg_url) == []


@pytest.mark.slow
def test_baseline_refuses_a_different_schema_and_lists_the_differences(pg_url: str) -> None:
    psql_f(pg_url, "001_init_schema.sql", "002_seed_data.sql")
    run(pg_url, "CREATE INDEX idx_hand_made ON public.campaigns (name)",
        "ALTER TABLE public.users DISABLE ROW LEVEL SECURITY")
    driver = PostgresDriver(pg_url)
    try:
        with pytest.raises(SchemaDiffers) as refused:
            Migrator(driver, PG_MIGRATIONS).baseline(2)
        # 003 was never applied: its indexes are missing too if one asks for 003
        with pytest.raises(SchemaDiffers) as too_far:
            Migrator(driver, PG_MIGRATIONS).baseline(3)
    finally:
        driver.close()
    assert {d.object for d in refused.value.differences} == {
        "index public.idx_hand_made", "table public.users"}
    assert any(d.object == "index public.idx_campaigns_org_id_status"
               for d in too_far.value.differences)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone() == (None,)
    result = cli("migrate", "baseline", "--to", "2",
                 env={"PLATFORMDB_POSTGRES_URL": pg_url})
    assert result.returncode == 1
    assert "is not what migrations 001-002 build: 2 difference(s)" in result.stderr


@pytest.mark.slow
def test_baseline_names_a_grant_it_refuses_in_full(pg_url: str) -> None:
    psql_f(pg_url, *(f"{m.label}.sql" for m in PG_MIGRATIONS[:5]))
    run(pg_url, "GRANT INSERT ON public.campaigns TO platform_auth")
    result = cli("migrate", "baseline", "--to", "5", env={"PLATFORMDB_POSTGRES_URL": pg_url})
    assert result.returncode == 1
    assert "live adds platform_auth: INSERT" in result.stderr, result.stderr
    assert "***" not in result.stderr


@pytest.mark.slow
def test_baseline_refuses_a_database_that_has_a_ledger(migrated_copy: str) -> None:
    driver = PostgresDriver(migrated_copy)
    try:
        with pytest.raises(Exception, match="ledger already records"):
            Migrator(driver, PG_MIGRATIONS).baseline()
    finally:
        driver.close()


# ------------------------------------------------------------------ ClickHouse


@pytest.mark.slow
def test_clickhouse_baseline_drift_and_health(ch_empty: Client, pg: str) -> None:
    """A ClickHouse database built by hand (the statements run without the engine) is
    baselined; later hand changes (a TTL, an extra table, a dropped view) are named."""
    driver = driver_for(ch_empty, pg)
    for migration in CH_MIGRATIONS:
        for statement in driver.statements(migration):
            ch_empty.command(statement.text)
    migrator = Migrator(driver, CH_MIGRATIONS)
    steps = migrator.baseline()
    assert [s.label for s in steps] == [m.label for m in CH_MIGRATIONS]
    assert {r.state for r in migrator.status()} == {"baselined"}
    assert migrator.drift() == []
    assert migrator.recorded_drift() is None
    ch_empty.command("ALTER TABLE campaign_metrics_daily MODIFY TTL date + INTERVAL 1 YEAR")
    ch_empty.command("CREATE TABLE hand_made (a UInt8) ENGINE = MergeTree ORDER BY a")
    ch_empty.command("DROP VIEW api_logs_hourly_mv")
    assert migrator.recorded_drift() is not None
    found = by_object(migrator.drift())
    assert {k: d.change for k, d in found.items()} == {
        "table campaign_metrics_daily": "changed", "table hand_made": "unexpected",
        "materialized view api_logs_hourly_mv": "missing"}
    assert "ttl: expected date + toIntervalYear(5), live date + toIntervalYear(1)" in \
        found["table campaign_metrics_daily"].detail


@pytest.mark.slow
def test_clickhouse_baseline_refuses_a_different_schema(ch_empty: Client, pg: str) -> None:
    driver = driver_for(ch_empty, pg)
    for migration in CH_MIGRATIONS[:2]:
        for statement in driver.statements(migration):
            ch_empty.command(statement.text)
    ch_empty.command("ALTER TABLE user_events ADD COLUMN extra String")
    with pytest.raises(SchemaDiffers) as refused:
        Migrator(driver, CH_MIGRATIONS).baseline(2)
    assert [d.object for d in refused.value.differences] == ["column user_events.extra"]
    assert driver.applied() == []


@pytest.mark.slow
def test_a_migrated_clickhouse_database_has_no_drift(ch: Client, pg: str) -> None:
    migrator = Migrator(driver_for(ch, pg), CH_MIGRATIONS)
    assert migrator.drift() == []


@pytest.mark.slow
def test_scratch_url_is_used_for_the_scratch_database(migrated_copy: str,
                                                      pg_admin_url: str) -> None:
    from platformdb.migrate.options import MigrateOptions

    driver = PostgresDriver(migrated_copy, options=MigrateOptions(scratch_url=pg_admin_url))
    try:
        assert Migrator(driver, PG_MIGRATIONS).drift() == []
    finally:
        driver.close()
    with psycopg.connect(pg_admin_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database"
                            " WHERE datname LIKE 'platformdb_scratch_%'").fetchone()
    assert left == (0,)

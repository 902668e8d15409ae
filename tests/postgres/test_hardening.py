"""Hardening: no temporary object hijacks a function, RLS on every partition, strict CHECKs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from platformdb import secrets
from platformdb.stores.postgres import partitions
from tests.conftest import fresh_name
from tests.postgres.test_tenancy import TENANT_TABLES, seed_org

ORG = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
OTHER = uuid.UUID("00000000-0000-4000-8000-0000000000e2")
# Names a temporary table (or its row type) could use to shadow what the
# functions and policies mean: types they cast to, tables they write, and
# catalogues the maintenance functions read.
SHADOWS = ["uuid", "text", "jsonb", "bigint", "timestamptz", "audit_logs", "users",
           "auth_tokens", "campaigns", "organizations", "pg_partitioned_table", "pg_attribute",
           "pg_inherits", "pg_class", "pg_settings"]


@pytest.fixture
def seeded(migrated_url: str) -> Iterator[tuple[str, dict[str, uuid.UUID]]]:
    with psycopg.connect(migrated_url) as conn:
        ids = seed_org(conn, ORG, "e")
        seed_org(conn, OTHER, "f")
        # A deployment may grant TEMPORARY back to a service (the migrations
        # do not): the functions must stay safe even then.
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO platform_app").format(
            sql.Identifier(conn.info.dbname)))
    yield migrated_url, ids


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from(SHADOWS), min_size=1, max_size=4, unique=True))
@pytest.mark.slow
def test_temporary_objects_do_not_change_what_rls_and_definer_functions_do(
        seeded: Any, names: list[str]) -> None:
    url, ids = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE platform_app")
        for name in names:
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (org_id uuid, id uuid, x int)").format(
                sql.Identifier(name)))
        with conn.transaction():
            conn.execute("SELECT set_tenant(%s, %s)", (ORG, ids["user"]))
            assert conn.execute("SELECT DISTINCT org_id FROM public.campaigns").fetchall() == [
                (ORG,)]
            # a write fires the audit trigger (SECURITY DEFINER) ...
            conn.execute("UPDATE public.campaigns SET budget = budget + 1 WHERE org_id = %s",
                         (ORG,))
            # ... and a definer function answers from the real tables
            event = conn.execute("SELECT log_audit_event('EXPORT', 'campaigns')").fetchone()
            token = conn.execute("SELECT count(*) FROM validate_auth_token("
                                 " encode(sha256('e'::bytea), 'hex'))").fetchone()
            assert token == (1,)
            logged = conn.execute(
                "SELECT action, resource_type, id = %s FROM public.audit_logs"
                " WHERE org_id = %s AND created_at = now() ORDER BY action",
                (event[0] if event else None, ORG)).fetchall()
            assert logged == [("EXPORT", "campaigns", True), ("UPDATE", "campaigns", False)]
            assert conn.execute("SELECT public.current_org_id()").fetchone() == (ORG,)
        for name in names:  # nothing was written into the decoys
            assert conn.execute(sql.SQL("SELECT count(*) FROM pg_temp.{}").format(
                sql.Identifier(name))).fetchone() == (0,)


def test_a_temp_table_named_uuid_does_not_break_partition_maintenance(seeded: Any) -> None:
    url, _ = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("uuid", "text", "pg_partitioned_table", "pg_attribute", "pg_inherits"):
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (x int)").format(sql.Identifier(name)))
        assert conn.execute("SELECT ensure_date_partitions('audit_logs', '2101-01-01', 2)"
                            ).fetchone() == (2,)
        dropped = {r[0] for r in conn.execute(
            "SELECT drop_date_partitions_before('audit_logs', '2101-02-01')").fetchall()}
        assert "audit_logs_y2101m01" in dropped and "audit_logs_y2101m02" not in dropped
        assert conn.execute("SELECT to_regclass('partitions.audit_logs_y2101m02')").fetchone() == (
            "partitions.audit_logs_y2101m02",)


def test_every_definer_function_pins_search_path_with_pg_temp_last(migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig, p.prosqlbody IS NOT NULL"
            "  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1").fetchall()
    definers = [r for r in rows if r[1]]
    assert {r[0].split("(")[0] for r in definers} >= {
        "audit_row_change", "validate_auth_token", "user_password_hash",
        "dsp_connector_credentials", "log_audit_event"}
    for name, _, config, _ in definers:
        assert config == ["search_path=pg_catalog, pg_temp"], name
    for name, _, config, atomic in rows:  # the others: pinned too, or bound at creation
        assert atomic or config == ["search_path=pg_catalog, pg_temp"], name


def leaf_security(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT t.relid::regclass::text, c.relrowsecurity AND c.relforcerowsecurity"
            "  FROM pg_class p, LATERAL pg_partition_tree(p.oid) t JOIN pg_class c"
            "    ON c.oid = t.relid"
            " WHERE p.relnamespace = 'public'::regnamespace AND p.relkind = 'p'"
            "   AND NOT p.relispartition AND t.level > 0").fetchall()
    return dict(rows)


@pytest.mark.slow
def test_every_partition_has_rls_enabled_and_forced_including_new_months(
        migrated_url: str) -> None:
    before = leaf_security(migrated_url)
    assert len(before) > 60 and all(before.values()), [k for k, v in before.items() if not v]
    partitions.ensure(migrated_url, months_ahead=2, today=date(2105, 5, 1))
    after = leaf_security(migrated_url)
    new = set(after) - set(before)
    assert len(new) == 2 * 3 * 5  # two tables, three months, the month and its 4 hash leaves
    assert all(after.values())


def test_a_partition_read_by_name_returns_nothing_even_when_granted(seeded: Any) -> None:
    url, _ = seeded
    with psycopg.connect(url) as conn:
        tables = [f"{t}_p{n}" for t in TENANT_TABLES
                  if t not in ("organizations", "campaign_metrics", "audit_logs") for n in range(8)]
        conn.execute("GRANT USAGE ON SCHEMA partitions TO platform_app")  # a mistaken grant
        conn.execute(sql.SQL("GRANT SELECT ON {} TO platform_app").format(
            sql.SQL(", ").join(sql.Identifier("partitions", t) for t in tables)))
        conn.execute("SET LOCAL ROLE platform_app")
        conn.execute("SELECT set_tenant(%s)", (ORG,))
        for table in tables:
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier("partitions", table))).fetchone() == (0,), table


@pytest.fixture
def plain_owner(pg_admin_url: str, migrated_url: str) -> Iterator[tuple[str, str]]:
    """``campaign_metrics`` (and its partitions) owned by a role that is no superuser."""
    role = fresh_name("t_owner")
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOBYPASSRLS").format(sql.Identifier(role)))
        ident = sql.Identifier(role)
        for (relation,) in conn.execute(
                "SELECT relid::regclass::text FROM pg_partition_tree('public.campaign_metrics')"
        ).fetchall():
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.SQL(relation), ident))
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public, partitions TO {}").format(
            ident))
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(conn.info.dbname), ident))
        conn.execute(sql.SQL("GRANT REFERENCES ON public.campaigns TO {}").format(ident))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION"
                             " ensure_date_partitions(text, date, integer),"
                             " drop_date_partitions_before(text, date, boolean),"
                             " set_updated_at() TO {}"
                             ).format(ident))
    try:
        yield migrated_url, role
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(migrated_url.rsplit("/", 1)[1])))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_maintenance_works_for_an_owner_subject_to_forced_rls(plain_owner: Any) -> None:
    url, role = plain_owner
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'O', 'o')", (ORG,))
        camp = conn.execute("INSERT INTO campaigns (org_id, name) VALUES (%s, 'C') RETURNING id",
                            (ORG,)).fetchone()
        conn.execute("INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type)"
                     " VALUES (%s, %s, '2107-03-04', 'dv360'), (%s, %s, '2001-01-01', 'dv360')",
                     (ORG, camp[0] if camp else None, ORG, camp[0] if camp else None))
        conn.commit()
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        assert conn.execute("SELECT row_security_active('partitions.campaign_metrics_default')"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT ensure_date_partitions('campaign_metrics', '2107-03-01', 1)"
                            ).fetchone() == (1,)
        conn.execute("SELECT drop_date_partitions_before('campaign_metrics', '2002-01-01')")
        conn.commit()
        conn.execute("RESET ROLE")
        rows = conn.execute("SELECT tableoid::regclass::text, metric_date FROM campaign_metrics"
                            " ORDER BY 2").fetchall()
        forced = conn.execute("SELECT relforcerowsecurity FROM pg_class"
                              " WHERE oid = 'partitions.campaign_metrics_default'::regclass"
                              ).fetchone()
    assert [(r[0][:38], r[1]) for r in rows] == [
        ("partitions.campaign_metrics_y2107m03_h", date(2107, 3, 4))]
    assert forced == (True,)


def bcrypt_like(cost: int, variant: str = "b") -> str:
    return f"$2{variant}${cost:02d}$" + "x" * 53


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cost=st.integers(min_value=0, max_value=99), variant=st.sampled_from("abyx"))
@pytest.mark.slow
def test_password_hashes_must_be_bcrypt_with_cost_10_or_more(migrated_url: str, cost: int,
                                                            variant: str) -> None:
    accepted = variant != "x" and 10 <= cost <= 31
    with psycopg.connect(migrated_url) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'H', 'h')"
                     " ON CONFLICT DO NOTHING", (ORG,))
        try:
            with conn.transaction():
                conn.execute("INSERT INTO users (org_id, email, password_hash, name)"
                             " VALUES (%s, %s, %s, 'U')",
                             (ORG, f"{uuid.uuid4().hex}@h.test", bcrypt_like(cost, variant)))
            stored = True
        except psycopg.errors.CheckViolation:
            stored = False
    assert stored == accepted


KEYS = secrets.KeyRing.parse("k-1:" + secrets.generate_key())
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=10)


@pytest.fixture
def connector(migrated_url: str) -> Iterator[tuple[str, uuid.UUID]]:
    with psycopg.connect(migrated_url) as conn:
        ids = seed_org(conn, ORG, "g")
    yield migrated_url, ids["conn"]


def store(url: str, connector_id: uuid.UUID, blob: bytes, key_id: str | None) -> bool:
    with psycopg.connect(url) as conn:
        try:
            with conn.transaction():
                conn.execute("UPDATE dsp_connectors SET credentials_encrypted = %s,"
                             " credentials_key_id = %s WHERE id = %s",
                             (blob, key_id, connector_id))
            return True
        except psycopg.errors.CheckViolation:
            return False


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plain=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)),
       key_id=st.sampled_from(["k-1", "kms-key-1", "t"]))
@pytest.mark.slow
def test_clear_text_credentials_are_refused(connector: Any, plain: bytes, key_id: str) -> None:
    url, connector_id = connector
    assert not store(url, connector_id, plain, key_id)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plain=JSON.map(lambda v: json.dumps(v).encode()))
@pytest.mark.slow
def test_sealed_credentials_are_accepted_with_their_own_key_id_only(connector: Any,
                                                                   plain: bytes) -> None:
    url, connector_id = connector
    sealed = secrets.encrypt(KEYS, plain, org_id=ORG, record_id=connector_id)
    assert store(url, connector_id, sealed.ciphertext, sealed.key_id)
    assert not store(url, connector_id, sealed.ciphertext, "k-2")
    assert not store(url, connector_id, sealed.ciphertext, None)
    assert not store(url, connector_id, sealed.ciphertext[:60], sealed.key_id)

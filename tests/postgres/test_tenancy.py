"""Tenant isolation through the application role, for every tenant table.

Two organizations get a row in every tenant table (inserted as the owner);
then, as ``platform_app`` with a tenant set, org A must not read, update,
delete or insert org B's rows, and with no tenant nothing is visible at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from platformdb.postgres import APP_ROLE, tenant_transaction

BCRYPT = "$2b$10$" + "a" * 53
ORG_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
ORG_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")

SEED = """
INSERT INTO organizations (id, name, slug) VALUES (%(org)s, 'Org ' || %(tag)s, 'org-' || %(tag)s);
INSERT INTO users (org_id, id, email, password_hash, name)
    VALUES (%(org)s, %(user)s, 'u@' || %(tag)s || '.test', %(hash)s, 'User');
INSERT INTO user_roles (org_id, user_id, role) VALUES (%(org)s, %(user)s, 'admin');
INSERT INTO auth_tokens (org_id, user_id, token_type, token_hash, expires_at)
    VALUES (%(org)s, %(user)s, 'access', encode(sha256(%(tag)s::bytea), 'hex'),
            now() + interval '1 hour');
INSERT INTO dsp_connectors (org_id, id, name, dsp_type, status)
    VALUES (%(org)s, %(conn)s, 'DV360', 'dv360', 'active');
INSERT INTO campaigns (org_id, id, dsp_connector_id, name, status, budget)
    VALUES (%(org)s, %(camp)s, %(conn)s, 'Campaign ' || %(tag)s, 'active', 1000);
INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type, impressions, clicks,
                              conversions, spend, revenue)
    VALUES (%(org)s, %(camp)s, current_date, 'dv360', 1000, 10, 1, 12.50, 40.00);
INSERT INTO etl_jobs (org_id, job_type) VALUES (%(org)s, 'dsp_import');
INSERT INTO notifications (org_id, user_id, channel, payload)
    VALUES (%(org)s, %(user)s, 'email', '{"subject": "hi"}');
INSERT INTO audit_logs (org_id, user_id, action, resource_type, resource_id)
    VALUES (%(org)s, %(user)s, 'UPDATE', 'campaigns', %(camp)s::text);
"""


def seed_org(conn: psycopg.Connection[Any], org: uuid.UUID, tag: str) -> dict[str, uuid.UUID]:
    ids = {"org": org, "user": uuid.uuid4(), "conn": uuid.uuid4(), "camp": uuid.uuid4()}
    for statement in filter(str.strip, SEED.split(";")):
        conn.execute(statement, {**ids, "tag": tag, "hash": BCRYPT})
    return ids


@pytest.fixture
def two_orgs(migrated_url: str) -> Iterator[tuple[str, dict[str, uuid.UUID], dict[str, uuid.UUID]]]:
    with psycopg.connect(migrated_url) as conn:
        a = seed_org(conn, ORG_A, "a")
        b = seed_org(conn, ORG_B, "b")
    yield migrated_url, a, b


def tenant_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND (c.relname = 'organizations' OR EXISTS (SELECT FROM pg_attribute a"
            "      WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped))"
            " ORDER BY 1").fetchall()
    return [r[0] for r in rows]


TENANT_TABLES = [
    "audit_logs", "auth_tokens", "campaign_metrics", "campaigns", "dsp_connectors", "etl_jobs",
    "notifications", "organizations", "user_roles", "users",
]


def key(table: str) -> sql.Identifier:
    return sql.Identifier("id" if table == "organizations" else "org_id")


def test_every_tenant_table_is_covered(migrated_url: str) -> None:
    assert tenant_tables(migrated_url) == TENANT_TABLES


def test_rls_is_enabled_and_forced_on_every_tenant_table(migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        rows = dict(conn.execute(
            "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class"
            " WHERE relname = ANY(%s) AND relnamespace = 'public'::regnamespace",
            (TENANT_TABLES,)).fetchall())
    assert rows == dict.fromkeys(TENANT_TABLES, True)


@pytest.mark.parametrize("table", TENANT_TABLES)
@pytest.mark.slow
def test_other_org_rows_are_invisible_and_untouchable(two_orgs: Any, table: str) -> None:
    url, a, b = two_orgs
    with psycopg.connect(url, autocommit=True) as conn:
        owner_count = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
            sql.Identifier(table), key(table)), (a["org"],)).fetchone()
        with tenant_transaction(conn, a["org"], a["user"], role=APP_ROLE):
            visible = conn.execute(sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1").format(
                key(table), sql.Identifier(table))).fetchall()
            assert visible == [(a["org"], owner_count[0])]  # type: ignore[index]
            for verb in ("UPDATE {t} SET {k} = {k} WHERE {k} = %s",
                         "DELETE FROM {t} WHERE {k} = %s"):
                if table == "audit_logs":
                    continue  # append-only: the app role may not update or delete at all
                cur = conn.execute(sql.SQL(verb).format(t=sql.Identifier(table), k=key(table)),
                                   (b["org"],))
                assert cur.rowcount == 0
        with psycopg.connect(url) as check:
            still = check.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                sql.Identifier(table), key(table)), (b["org"],)).fetchone()
        assert still is not None and still[0] >= 1


def copy_of_row(conn: psycopg.Connection[Any], table: str, org: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE {} = %s LIMIT 1").format(
        sql.Identifier(table), key(table)), (org,)).fetchone()
    assert row is not None
    data: dict[str, Any] = dict(row[0])
    if "id" in data:
        data["id"] = str(uuid.uuid4())
    if table == "organizations":
        data["slug"] = f"copy-{uuid.uuid4().hex[:8]}"
    return data


def insert_copy(conn: psycopg.Connection[Any], table: str, data: dict[str, Any]) -> None:
    conn.execute(sql.SQL("INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, %s)")
                 .format(t=sql.Identifier(table)), (Jsonb(data),))


@pytest.mark.parametrize("table", TENANT_TABLES)
@pytest.mark.slow
def test_inserting_a_row_for_another_org_is_refused(two_orgs: Any, table: str) -> None:
    url, a, b = two_orgs
    # audit rows are written by the audit trigger only: the app may not insert at all
    refusal = "permission denied" if table == "audit_logs" else "row-level security"
    with psycopg.connect(url, autocommit=True) as conn:
        data = copy_of_row(conn, table, b["org"])
        with (pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal),
              tenant_transaction(conn, a["org"], a["user"], role=APP_ROLE)):
            insert_copy(conn, table, data)


@pytest.mark.parametrize("table", TENANT_TABLES)
@pytest.mark.slow
def test_with_no_tenant_the_app_role_sees_and_writes_nothing(two_orgs: Any, table: str) -> None:
    url, a, _ = two_orgs
    with psycopg.connect(url, autocommit=True) as conn:
        data = copy_of_row(conn, table, a["org"])
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(APP_ROLE)))
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(table))).fetchone()
            assert count == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(APP_ROLE)))
            insert_copy(conn, table, data)


@pytest.mark.slow
def test_a_malformed_tenant_setting_fails_closed(two_orgs: Any) -> None:
    url, a, _ = two_orgs
    with (psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InvalidTextRepresentation),
          conn.transaction()):
        conn.execute("SET LOCAL ROLE platform_app")
        conn.execute("SELECT set_tenant(%s)", (a["org"],))
        conn.execute("SELECT set_config('app.current_org_id', 'not-a-uuid', true)")
        conn.execute("SELECT count(*) FROM campaigns")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.uuids())
@pytest.mark.slow
def test_any_other_tenant_id_sees_none_of_the_seeded_rows(two_orgs: Any, tenant: uuid.UUID) -> None:
    url, a, b = two_orgs
    with psycopg.connect(url) as conn, tenant_transaction(conn, tenant, role=APP_ROLE):
        for table in TENANT_TABLES:
            rows = conn.execute(sql.SQL("SELECT {} FROM {}").format(
                key(table), sql.Identifier(table))).fetchall()
            assert all(r[0] == tenant for r in rows)
            assert not any(r[0] in (a["org"], b["org"]) for r in rows)


def test_composite_foreign_keys_reject_cross_tenant_references(two_orgs: Any) -> None:
    url, a, b = two_orgs
    with psycopg.connect(url) as conn:
        # as the owner: RLS is not what stops this
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("INSERT INTO campaigns (org_id, dsp_connector_id, name, status)"
                         " VALUES (%s, %s, 'Cross', 'draft')", (a["org"], b["conn"]))
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("INSERT INTO user_roles (org_id, user_id, role) VALUES (%s, %s, 'viewer')",
                         (a["org"], b["user"]))


def test_tenant_transaction_does_not_leak_the_tenant_to_the_next_transaction(two_orgs: Any) -> None:
    url, a, _ = two_orgs
    with psycopg.connect(url, autocommit=True) as conn:
        with tenant_transaction(conn, a["org"]):
            assert conn.execute("SELECT current_setting('app.current_org_id')").fetchone() == (
                str(a["org"]),)
        value = conn.execute("SELECT current_setting('app.current_org_id', true)").fetchone()
        assert value in ((None,), ("",))


def test_tenant_transaction_rejects_a_non_uuid() -> None:
    from platformdb.errors import ValidationError

    with (pytest.raises(ValidationError, match="org_id must be a UUID"),
          tenant_transaction(None, "org_456")):  # type: ignore[arg-type]
        pass


def test_tenant_transaction_refuses_to_nest_in_an_open_transaction(two_orgs: Any) -> None:
    from platformdb.errors import ValidationError

    url, a, _ = two_orgs
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")  # opens a transaction
        with (pytest.raises(ValidationError, match="must start the transaction"),
              tenant_transaction(conn, a["org"], role=APP_ROLE)):
            pass

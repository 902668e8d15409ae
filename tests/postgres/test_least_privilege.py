"""No service role reads a secret; each secret function serves one role and one tenant.

The attacker holds ``platform_app``, ``platform_readonly`` or
``platform_etl`` (a stolen service credential; any login can set any
tenant). Whatever they try (the column, ``SELECT *``, a whole-row
reference, ``COPY``, every view and table they may read, the partitions, the
secret functions) no password hash, token hash or DSP credential of any
tenant comes back.
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

from platformdb import secrets
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres.driver import PostgresDriver
from tests.postgres.test_tenancy import seed_org

ATTACKERS = ["platform_app", "platform_readonly", "platform_etl"]
SERVICE_ROLES = [*ATTACKERS, "platform_auth", "platform_connector", "platform_dictionary"]
SECRET_COLUMNS = [("users", "password_hash"), ("auth_tokens", "token_hash"),
                  ("dsp_connectors", "credentials_encrypted")]
# Roles allowed to read a secret column: the owners of the definer functions.
SECRET_READERS = {"platform_secret_reader", "platform_token_validator"}
KEYS = secrets.KeyRing.parse("t1:" + secrets.generate_key())
ORG_A = uuid.UUID("00000000-0000-4000-8000-00000000a11a")
ORG_B = uuid.UUID("00000000-0000-4000-8000-00000000b11b")
PASSWORD_HASHES = {ORG_A: "$2b$10$" + "A" * 53, ORG_B: "$2b$10$" + "B" * 53}


@pytest.fixture
def secrets_db(migrated_url: str) -> Iterator[tuple[str, dict[uuid.UUID, dict[str, Any]]]]:
    """Two tenants, each with a user, a token and a connector with credentials."""
    found: dict[uuid.UUID, dict[str, Any]] = {}
    with psycopg.connect(migrated_url) as conn:
        for org, tag in ((ORG_A, "a"), (ORG_B, "b")):
            ids = seed_org(conn, org, tag)
            conn.execute("UPDATE users SET password_hash = %s WHERE org_id = %s",
                         (PASSWORD_HASHES[org], org))
            sealed = secrets.encrypt(KEYS, b'{"client_secret": "s"}', org_id=org,
                                     record_id=ids["conn"])
            conn.execute("UPDATE dsp_connectors SET credentials_encrypted = %s,"
                         " credentials_key_id = %s WHERE org_id = %s",
                         (sealed.ciphertext, sealed.key_id, org))
            token = conn.execute("SELECT token_hash FROM auth_tokens WHERE org_id = %s",
                                 (org,)).fetchone()
            assert token is not None
            found[org] = {**ids, "email": f"u@{tag}.test", "hash": PASSWORD_HASHES[org],
                          "token_hash": token[0], "credentials": sealed.ciphertext}
    yield migrated_url, found


def secret_values(found: dict[uuid.UUID, dict[str, Any]]) -> list[str]:
    """How each secret would look in any text output (hex for bytea)."""
    values = []
    for org in found.values():
        values += [org["hash"], org["token_hash"], org["credentials"].hex()]
    return values


def as_role(conn: psycopg.Connection[Any], role: str, org: uuid.UUID | None) -> None:
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    if org is not None:
        conn.execute("SELECT set_tenant(%s)", (org,))


def attempt(conn: psycopg.Connection[Any], query: sql.Composable) -> str:
    """What a query returns, as text, or '' when it is refused."""
    try:
        with conn.transaction():
            cur = conn.cursor()
            if query.as_string(conn).startswith("COPY"):
                with cur.copy(query) as copy:
                    return b"".join(bytes(chunk) for chunk in copy).decode(errors="replace")
            return repr(cur.execute(query).fetchall())
    except psycopg.errors.InsufficientPrivilege:
        return ""


def readable_relations(conn: psycopg.Connection[Any], role: str) -> list[tuple[str, list[str]]]:
    """Every relation of any schema ``role`` may read, with the columns it may read."""
    rows = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname), array_agg(a.attname ORDER BY a.attnum)"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        "   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        "   AND has_schema_privilege(%(role)s, n.oid, 'USAGE')"
        "   AND has_column_privilege(%(role)s, c.oid, a.attnum, 'SELECT')"
        " GROUP BY 1 ORDER BY 1", {"role": role}).fetchall()
    return [(str(name), list(cols)) for name, cols in rows]


def test_only_the_definer_roles_hold_select_on_a_secret_column(migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        holders = conn.execute(
            "SELECT t.tab, t.col, r.rolname FROM pg_roles r,"
            " (VALUES ('users', 'password_hash'), ('auth_tokens', 'token_hash'),"
            "         ('dsp_connectors', 'credentials_encrypted')) AS t(tab, col)"
            " WHERE NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%%'"
            "   AND has_column_privilege(r.oid, ('public.' || t.tab)::regclass, t.col, 'SELECT')"
            " ORDER BY 1, 2, 3").fetchall()
    assert {(t, c) for t, c, _ in holders} == {
        ("users", "password_hash"), ("auth_tokens", "token_hash"),
        ("dsp_connectors", "credentials_encrypted")}
    assert {r for _, _, r in holders} <= SECRET_READERS, holders


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(ATTACKERS), tenant=st.sampled_from([ORG_A, ORG_B, None]),
       target=st.sampled_from(SECRET_COLUMNS))
@pytest.mark.slow
def test_no_attacker_role_reads_a_secret_column_directly(
        secrets_db: Any, role: str, tenant: uuid.UUID | None, target: tuple[str, str]) -> None:
    url, found = secrets_db
    table, column = target
    t, c = sql.Identifier(table), sql.Identifier(column)
    partition = sql.Identifier("partitions", f"{table}_p0")
    probes: list[sql.Composable] = [
        sql.SQL("SELECT {} FROM {}").format(c, t),
        sql.SQL("SELECT * FROM {}").format(t),
        sql.SQL("SELECT x FROM {} AS x").format(t),
        sql.SQL("SELECT to_jsonb(x) FROM {} AS x").format(t),
        sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL").format(t, c),
        sql.SQL("COPY {} TO STDOUT").format(t),
        sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(c, t),
        sql.SQL("SELECT * FROM {}").format(partition),
        sql.SQL("SELECT {} FROM {}").format(c, partition),
        sql.SQL("SELECT * FROM user_password_hash({})").format(sql.Literal("u@a.test")),
        sql.SQL("SELECT * FROM dsp_connector_credentials({})").format(
            sql.Literal(str(found[ORG_A]["conn"]))),
    ]
    leaked = secret_values(found)
    with psycopg.connect(url) as conn:
        for probe in probes:
            with conn.transaction():
                as_role(conn, role, tenant)
                out = attempt(conn, probe)
            assert not any(v in out for v in leaked), (role, probe.as_string(conn), out)
            assert "count" not in probe.as_string(conn) or out == ""


@pytest.mark.parametrize("role", ATTACKERS)
def test_nothing_an_attacker_role_can_read_holds_a_secret(secrets_db: Any, role: str) -> None:
    url, found = secrets_db
    leaked = secret_values(found)
    with psycopg.connect(url) as conn:
        relations = readable_relations(conn, role)
        assert relations, role
        for tenant in (ORG_A, ORG_B, None):
            for relation, columns in relations:
                query = sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(sql.Identifier(col) for col in columns),
                    sql.SQL(relation))
                with conn.transaction():
                    as_role(conn, role, tenant)
                    out = repr(conn.execute(query).fetchall())
                assert not any(v in out for v in leaked), (role, relation)


def test_the_etl_role_reads_only_the_tables_of_its_job(migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        readable = {name for name, _ in readable_relations(conn, "platform_etl")}
    assert readable == {"public.campaign_metrics", "public.campaigns", "public.dsp_connectors",
                        "public.etl_jobs", "public.organizations"}


def test_the_etl_role_sees_every_tenants_connectors_but_no_credentials(secrets_db: Any) -> None:
    url, found = secrets_db
    with psycopg.connect(url) as conn, conn.transaction():
        as_role(conn, "platform_etl", None)
        rows = conn.execute("SELECT org_id, id, credentials_key_id FROM dsp_connectors"
                            " ORDER BY org_id").fetchall()
        assert [(o, i) for o, i, _ in rows] == [(o, found[o]["conn"]) for o in sorted(found)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT credentials_encrypted FROM dsp_connectors")


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.one_of(st.sampled_from([ORG_A, ORG_B]), st.uuids()))
@pytest.mark.slow
def test_the_auth_role_gets_a_password_hash_of_its_tenant_only(secrets_db: Any,
                                                              tenant: uuid.UUID) -> None:
    url, found = secrets_db
    with psycopg.connect(url) as conn, conn.transaction():
        as_role(conn, "platform_auth", tenant)
        for org, ids in found.items():
            rows = conn.execute("SELECT user_id, password_hash FROM user_password_hash(%s)",
                                (ids["email"].upper(),)).fetchall()
            assert rows == ([(ids["user"], ids["hash"])] if org == tenant else [])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT password_hash FROM users")


def test_without_a_tenant_the_secret_functions_return_nothing(secrets_db: Any) -> None:
    url, found = secrets_db
    with psycopg.connect(url) as conn:
        with conn.transaction():
            as_role(conn, "platform_auth", None)
            assert conn.execute("SELECT * FROM user_password_hash('u@a.test')").fetchall() == []
        with conn.transaction():
            as_role(conn, "platform_connector", None)
            assert conn.execute("SELECT * FROM dsp_connector_credentials(%s)",
                                (found[ORG_A]["conn"],)).fetchall() == []


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant=st.one_of(st.sampled_from([ORG_A, ORG_B]), st.uuids()))
@pytest.mark.slow
def test_the_connector_role_decrypts_its_tenants_credentials_only(secrets_db: Any,
                                                                 tenant: uuid.UUID) -> None:
    url, found = secrets_db
    with psycopg.connect(url) as conn, conn.transaction():
        as_role(conn, "platform_connector", tenant)
        for org, ids in found.items():
            rows = conn.execute("SELECT credentials_encrypted, credentials_key_id"
                                " FROM dsp_connector_credentials(%s)", (ids["conn"],)).fetchall()
            if org != tenant:
                assert rows == []
                continue
            (blob, key_id), = rows
            assert key_id == "t1"
            assert secrets.decrypt(KEYS, blob, org_id=org, record_id=ids["conn"]) == (
                b'{"client_secret": "s"}')


@pytest.mark.slow
def test_the_dictionary_role_reads_exactly_its_two_views_across_tenants(secrets_db: Any) -> None:
    url, found = secrets_db
    with psycopg.connect(url) as conn:
        assert readable_relations(conn, "platform_dictionary") == [
            ("public.dictionary_campaigns", ["org_id", "id", "name", "status", "currency"]),
            ("public.dictionary_organizations", ["id", "name", "slug", "status"]),
        ]
        with conn.transaction():
            as_role(conn, "platform_dictionary", None)  # no tenant: the dictionaries load all
            orgs = conn.execute("SELECT id FROM dictionary_organizations ORDER BY id").fetchall()
            campaigns = conn.execute("SELECT org_id, id FROM dictionary_campaigns"
                                     " ORDER BY org_id").fetchall()
        assert orgs == [(o,) for o in sorted(found)]
        assert campaigns == [(o, found[o]["camp"]) for o in sorted(found)]
        with conn.transaction():
            as_role(conn, "platform_dictionary", None)
            for table in ("organizations", "campaigns", "users", "dsp_connectors"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))


def test_service_roles_may_write_a_secret_they_cannot_read_back(secrets_db: Any) -> None:
    url, _ = secrets_db
    with psycopg.connect(url) as conn, conn.transaction():
        as_role(conn, "platform_app", ORG_A)
        conn.execute("UPDATE users SET password_hash = %s WHERE org_id = %s",
                     ("$2b$12$" + "C" * 53, ORG_A))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE users SET name = name WHERE org_id = %s RETURNING password_hash",
                         (ORG_A,))


def test_every_function_is_closed_to_public_and_the_secret_ones_to_all_but_one_role(
        migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        public = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = 'public'::regnamespace"
            "   AND has_function_privilege('public', p.oid, 'EXECUTE')").fetchall()
        assert public == []
        callers = dict(conn.execute(
            "SELECT p.proname, array_agg(r.rolname ORDER BY r.rolname) FROM pg_proc p, pg_roles r"
            " WHERE p.proname IN ('user_password_hash', 'dsp_connector_credentials')"
            "   AND r.rolname = ANY(%s) AND has_function_privilege(r.oid, p.oid, 'EXECUTE')"
            " GROUP BY 1", (SERVICE_ROLES,)).fetchall())
    assert callers == {"user_password_hash": ["platform_auth"],
                       "dsp_connector_credentials": ["platform_connector"]}


@pytest.fixture
def engine_migrated(pg_url: str) -> str:
    """A database migrated by the engine itself (template copies lose database ACLs)."""
    driver = PostgresDriver(pg_url)
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
    finally:
        driver.close()
    return pg_url


@pytest.mark.slow
def test_the_database_is_closed_to_public_and_open_to_the_service_roles(
        engine_migrated: str) -> None:
    with psycopg.connect(engine_migrated) as conn:
        rows = dict(conn.execute(
            "SELECT r, has_database_privilege(r, current_database(), 'CONNECT')"
            "          || '/' || has_database_privilege(r, current_database(), 'TEMPORARY')"
            "  FROM unnest(%s::text[]) AS r",
            (["public", *SERVICE_ROLES],)).fetchall())
        assert rows == {"public": "false/false", "platform_app": "true/false",
                        "platform_readonly": "true/false", "platform_etl": "true/true",
                        "platform_auth": "true/false", "platform_connector": "true/false",
                        "platform_dictionary": "true/false"}
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SET LOCAL ROLE platform_app")
            conn.execute("CREATE TEMP TABLE uuid (x int)")


@pytest.mark.slow
def test_objects_the_owner_creates_later_are_not_open_to_public(engine_migrated: str) -> None:
    with psycopg.connect(engine_migrated) as conn:
        conn.execute("CREATE FUNCTION public.later_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("CREATE TABLE public.later_table (x int)")
        row = conn.execute(
            "SELECT has_function_privilege('public', 'public.later_fn()', 'EXECUTE'),"
            "       has_function_privilege('platform_app', 'public.later_fn()', 'EXECUTE'),"
            "       has_table_privilege('platform_app', 'public.later_table', 'SELECT')"
        ).fetchone()
        conn.rollback()
    assert row == (False, False, False)

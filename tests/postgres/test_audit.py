"""The audit trail: written only by the server, never rewritten, no secret inside.

- no role but ``platform_auditor`` (the trigger's and ``log_audit_event``'s
  owner) may insert audit rows; none may update, delete or truncate them;
- whatever JSON a tenant stores in ``dsp_connectors.config`` or
  ``notifications.payload``, the audit row holds it with every secret-looking
  key's value replaced by ``"***"`` (checked against an independent
  implementation of the rule), at any depth, and nothing else changed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.postgres.test_tenancy import seed_org

ORG = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
SECRET_KEY = re.compile(r"passw|passphrase|secret|token|api[-_ ]?key|credential|private[-_ ]?key"
                        r"|access[-_ ]?key|authorization|cookie", re.IGNORECASE)
SECRET_WORDS = ["password", "Passwd", "passphrase", "client_secret", "SECRET", "token",
                "refresh_token", "api_key", "apiKey", "API-KEY", "api key", "credentials",
                "private_key", "privateKey", "access_key", "AccessKeyId", "Authorization",
                "cookie", "x_token_y"]
PLAIN_WORDS = ["region", "name", "timeout", "kind", "pass", "key", "id", "tok", "api", "auth"]


def masked(value: Any) -> Any:
    """The rule, stated independently of the SQL: mask the value of a secret key."""
    if isinstance(value, dict):
        return {k: "***" if SECRET_KEY.search(k) else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


KEYS = st.one_of(st.sampled_from(SECRET_WORDS), st.sampled_from(PLAIN_WORDS),
                 st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                             max_size=12))
DOCUMENTS = st.dictionaries(
    KEYS, st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8), max_size=5)


@pytest.fixture
def tenant(migrated_url: str) -> Iterator[tuple[str, dict[str, uuid.UUID]]]:
    with psycopg.connect(migrated_url) as conn:
        ids = seed_org(conn, ORG, "d")
    yield migrated_url, ids


@pytest.mark.slow
def test_only_the_auditor_may_write_audit_rows_and_nobody_may_change_them(
        migrated_url: str) -> None:
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute(
            "SELECT r.rolname, p.priv FROM pg_roles r,"
            " unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(priv)"
            " WHERE NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%%'"
            "   AND r.oid <> (SELECT relowner FROM pg_class"
            "                  WHERE oid = 'public.audit_logs'::regclass)"
            "   AND has_table_privilege(r.oid, 'public.audit_logs', p.priv)"
            " ORDER BY 1, 2").fetchall()
    assert rows == [("platform_auditor", "INSERT")]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(db_user=st.sampled_from(["platform", "postgres", "someone_else"]),
       txid=st.integers(1, 2**40), days_ago=st.integers(0, 5000))
@pytest.mark.slow
def test_the_app_cannot_forge_an_audit_row(tenant: Any, db_user: str, txid: int,
                                           days_ago: int) -> None:
    url, ids = tenant
    with (psycopg.connect(url) as conn,
          pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction()):
        conn.execute("SET LOCAL ROLE platform_app")
        conn.execute("SELECT set_tenant(%s, %s)", (ORG, ids["user"]))
        conn.execute("INSERT INTO audit_logs (org_id, user_id, action, resource_type, db_user,"
                     " txid, created_at) VALUES (%s, %s, 'LOGIN', 'users', %s, %s,"
                     " now() - make_interval(days => %s))",
                     (ORG, uuid.uuid4(), db_user, txid, days_ago))


@pytest.mark.slow
def test_log_audit_event_needs_a_tenant_and_fills_in_who_and_when(tenant: Any) -> None:
    url, ids = tenant
    with psycopg.connect(url) as conn:
        with (pytest.raises(psycopg.errors.InsufficientPrivilege, match="no tenant"),
              conn.transaction()):
            conn.execute("SET LOCAL ROLE platform_app")
            conn.execute("SELECT log_audit_event('EXPORT', 'campaigns')")
        with conn.transaction():
            conn.execute("SET LOCAL ROLE platform_app")
            conn.execute("SELECT set_tenant(%s, %s)", (ORG, ids["user"]))
            event = conn.execute("SELECT log_audit_event('EXPORT', 'campaigns', 'c1',"
                                 " '{\"rows\": 1}')").fetchone()
            row = conn.execute("SELECT org_id, user_id, db_user = session_user,"
                               " created_at = now(), txid = txid_current(), new_values"
                               " FROM audit_logs WHERE id = %s", (event[0] if event else None,)
                               ).fetchone()
    assert row == (ORG, ids["user"], True, True, True, {"rows": 1})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=DOCUMENTS, payload=DOCUMENTS)
@pytest.mark.slow
def test_secrets_inside_json_never_reach_the_audit_trail(tenant: Any, config: dict[str, Any],
                                                        payload: dict[str, Any]) -> None:
    url, ids = tenant
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE platform_app")
        conn.execute("SELECT set_tenant(%s, %s)", (ORG, ids["user"]))
        connector = uuid.uuid4()
        conn.execute("INSERT INTO dsp_connectors (org_id, id, name, dsp_type, config)"
                     " VALUES (%s, %s, %s, 'xandr', %s)",
                     (ORG, connector, connector.hex, Jsonb(config)))
        notification = conn.execute(
            "INSERT INTO notifications (org_id, user_id, channel, payload)"
            " VALUES (%s, %s, 'email', %s) RETURNING id", (ORG, ids["user"], Jsonb(payload))
        ).fetchone()
        conn.execute("UPDATE dsp_connectors SET config = config || '{\"added\": {\"token\": 1}}'"
                     " WHERE id = %s", (connector,))
        trail = conn.execute(
            "SELECT resource_id, action, old_values, new_values FROM audit_logs"
            " WHERE resource_id IN (%s, %s) ORDER BY action",
            (str(connector), str(notification[0] if notification else ""))).fetchall()
    by_key = {(r[0], r[1]): r for r in trail}
    inserted = by_key[(str(connector), "INSERT")]
    assert inserted[3]["config"] == masked(config)
    assert by_key[(str(notification[0] if notification else ""), "INSERT")][3]["payload"] == (
        masked(payload))
    updated = by_key[(str(connector), "UPDATE")]
    assert updated[2]["config"] == masked(config)
    assert updated[3]["config"] == masked({**config, "added": {"token": 1}})

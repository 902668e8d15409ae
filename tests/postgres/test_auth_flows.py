"""Tokens and sign-in against the database, through the roles the services use."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from platformdb import auth, secrets
from tests.postgres.test_tenancy import seed_org

ORG = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
OTHER = uuid.UUID("00000000-0000-4000-8000-0000000000c2")
PASSWORD = "Correct#Horse1"


@pytest.fixture
def users(migrated_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with psycopg.connect(migrated_url) as conn:
        ids = seed_org(conn, ORG, "c")
        seed_org(conn, OTHER, "c2")
        # a hash of the lowest accepted cost, as an older deployment stored it
        conn.execute("UPDATE users SET password_hash = %s WHERE org_id = %s",
                     (auth.hash_password(PASSWORD, cost=10), ORG))
    yield migrated_url, ids


@pytest.mark.slow
def test_an_issued_token_is_stored_only_as_its_hash(users: Any) -> None:
    url, ids = users
    with psycopg.connect(url, autocommit=True) as conn:
        issued = auth.issue_token(conn, ORG, ids["user"], "api_key", dt.timedelta(days=30),
                                  role="platform_app")
        dump = conn.execute("SELECT to_jsonb(t)::text FROM auth_tokens t WHERE id = %s",
                            (issued.token_id,)).fetchone()
        assert dump is not None and issued.token not in dump[0]
        assert issued.token_hash in dump[0] and len(issued.token) >= 43
        info = auth.validate_token(conn, issued.token)
        assert info is not None
        assert (info.org_id, info.user_id, info.token_id, info.token_type) == (
            ORG, ids["user"], issued.token_id, "api_key")
        assert auth.validate_token(conn, issued.token_hash) is None  # the hash is no token
        assert auth.validate_token(conn, issued.token + "x") is None
        assert auth.revoke_token(conn, ORG, issued.token_id, role="platform_app")
        assert not auth.revoke_token(conn, ORG, issued.token_id, role="platform_app")
        assert auth.validate_token(conn, issued.token) is None


@pytest.mark.slow
def test_tokens_cannot_be_issued_into_another_tenant(users: Any) -> None:
    url, ids = users
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        auth.issue_token(conn, OTHER, ids["user"], "access", dt.timedelta(hours=1),
                         role="platform_app")
    with pytest.raises(auth.ValidationError, match="token type"):
        auth.issue_token(None, ORG, ids["user"], "magic", dt.timedelta(hours=1))  # type: ignore[arg-type]


@pytest.mark.slow
def test_sign_in_verifies_rehashes_and_audits(users: Any) -> None:
    url, ids = users
    with psycopg.connect(url, autocommit=True) as conn:
        assert auth.authenticate(conn, ORG, "U@C.test", "wrong#Pass1", cost=11,
                                 role="platform_auth") is None
        assert auth.authenticate(conn, ORG, "nobody@c.test", PASSWORD, cost=11,
                                 role="platform_auth") is None
        assert auth.authenticate(conn, OTHER, "u@c.test", PASSWORD, cost=11,
                                 role="platform_auth") is None  # the same email, another tenant
        assert auth.authenticate(conn, ORG, "u@c.test", PASSWORD, cost=11,
                                 role="platform_auth") == ids["user"]
        stored = conn.execute("SELECT password_hash, last_login_at IS NOT NULL FROM users"
                              " WHERE org_id = %s", (ORG,)).fetchone()
        trail = conn.execute("SELECT action FROM audit_logs WHERE org_id = %s AND"
                             " action LIKE 'LOGIN%%' ORDER BY created_at, action", (ORG,)
                             ).fetchall()
    assert stored is not None and stored[0].startswith("$2b$11$") and stored[1]
    assert auth.verify_password(PASSWORD, stored[0])
    assert trail == [("LOGIN_FAILED",), ("LOGIN_FAILED",), ("LOGIN",)]


@pytest.mark.slow
def test_the_app_role_cannot_sign_in_for_lack_of_the_hash(users: Any) -> None:
    url, _ = users
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        auth.authenticate(conn, ORG, "u@c.test", PASSWORD, cost=10, role="platform_app")


@pytest.mark.slow
def test_credentials_round_trip_through_the_app_and_the_connector_roles(users: Any) -> None:
    url, ids = users
    keys = secrets.KeyRing.parse("c1:" + secrets.generate_key())
    app, connector = {"role": "platform_app"}, {"role": "platform_connector"}
    with psycopg.connect(url) as service:
        assert secrets.store_dsp_credentials(service, keys, ORG, ids["conn"],
                                             {"client_secret": "s3"}, **app) == "c1"
        assert secrets.read_dsp_credentials(service, keys, ORG, ids["conn"], **connector) == {
            "client_secret": "s3"}
        assert secrets.read_dsp_credentials(service, keys, OTHER, ids["conn"],
                                            **connector) is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            secrets.read_dsp_credentials(service, keys, ORG, ids["conn"], **app)
        with pytest.raises(auth.ValidationError, match="no DSP connector"):
            secrets.store_dsp_credentials(service, keys, OTHER, ids["conn"], {"a": 1}, **app)

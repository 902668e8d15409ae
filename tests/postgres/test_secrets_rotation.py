"""Key rotation: every DSP credential ends up under the active key, in batches, resumably."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platformdb import secrets
from platformdb.errors import ConfigError
from tests.postgres.test_tenancy import seed_org

OLD = "old:" + secrets.generate_key()
NEW = "new:" + secrets.generate_key()
STRAY = "stray:" + secrets.generate_key()


@pytest.fixture
def connectors(migrated_url: str) -> Iterator[tuple[str, list[tuple[uuid.UUID, uuid.UUID]]]]:
    """Five tenants' connectors, their credentials under the old key."""
    keys = secrets.KeyRing.parse(OLD)
    found = []
    with psycopg.connect(migrated_url) as conn:
        for n in range(5):
            org = uuid.UUID(int=0xE0 + n)
            ids = seed_org(conn, org, f"r{n}")
            sealed = secrets.encrypt(keys, json.dumps({"n": n}).encode(), org_id=org,
                                     record_id=ids["conn"])
            conn.execute("UPDATE dsp_connectors SET credentials_encrypted = %s,"
                         " credentials_key_id = %s WHERE org_id = %s",
                         (sealed.ciphertext, sealed.key_id, org))
            found.append((org, ids["conn"]))
    yield migrated_url, found


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT org_id, id, credentials_key_id, credentials_encrypted"
                            " FROM dsp_connectors ORDER BY org_id").fetchall()


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 7))
@pytest.mark.slow
def test_rotation_moves_every_credential_to_the_active_key(connectors: Any, batch: int) -> None:
    url, _ = connectors
    ring = secrets.KeyRing.parse(f"{NEW},{OLD}")
    before = {(o, i): k for o, i, k, _ in stored(url)}
    dry = secrets.rotate_dsp_credentials(url, ring, batch_size=batch, dry_run=True)
    assert {(o, i): k for o, i, k, _ in stored(url)} == before
    report = secrets.rotate_dsp_credentials(url, ring, batch_size=batch)
    expected = sum(k != "new" for k in before.values())
    assert dry.rotated == report.rotated == expected and report.failed == []
    assert report.batches == -(-expected // batch)
    after = stored(url)
    assert {k for _, _, k, _ in after} == {"new"}
    only_new = secrets.KeyRing.parse(NEW)  # the old key can now be retired
    for org, connector, _, blob in after:
        n = json.loads(secrets.decrypt(only_new, blob, org_id=org, record_id=connector))["n"]
        assert uuid.UUID(int=0xE0 + n) == org
    with psycopg.connect(url) as conn:
        audited = conn.execute("SELECT count(*) FROM audit_logs WHERE action = 'UPDATE'"
                               " AND resource_type = 'dsp_connectors'"
                               " AND new_values ->> 'credentials_encrypted' = '***'"
                               " AND new_values ->> 'credentials_key_id' = 'new'").fetchone()
    assert audited is not None and audited[0] >= expected


@pytest.mark.slow
def test_a_value_without_its_key_is_reported_and_left_alone(connectors: Any) -> None:
    url, found = connectors
    ring = secrets.KeyRing.parse(f"{NEW},{STRAY}")  # the old key is missing
    report = secrets.rotate_dsp_credentials(url, ring, batch_size=2)
    assert report.rotated == 0 and len(report.failed) == len(found)
    assert "'old' is not configured" in report.failed[0]
    assert {k for _, _, k, _ in stored(url)} == {"old"}


@pytest.mark.slow
def test_rotation_refuses_a_role_subject_to_row_level_security(connectors: Any) -> None:
    url, _ = connectors
    scoped = f"{url}?options=-c%20role%3Dplatform_app"  # a session acting as platform_app
    with pytest.raises(ConfigError, match="bypasses row-level security"):
        secrets.rotate_dsp_credentials(scoped, secrets.KeyRing.parse(NEW))


def cli(url: str, keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLATFORMDB_POSTGRES_URL": url, "PLATFORMDB_SECRET_KEYS": keys}
    return subprocess.run([sys.executable, "-m", "platformdb.cli", "secrets", "rotate", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_the_cli_rotates_and_exits_1_when_a_key_is_missing(connectors: Any) -> None:
    url, found = connectors
    missing = cli(url, NEW)
    assert missing.returncode == 1, missing.stderr
    assert f"{len(found)} credential(s) could not be decrypted" in missing.stderr
    done = cli(url, f"{NEW},{OLD}", "--batch-size", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rotated"] == len(found)
    again = cli(url, f"{NEW},{OLD}")
    assert again.returncode == 0 and "re-encrypted 0 credential(s) under key new" in again.stdout
    unset = cli(url, "")
    assert unset.returncode == 2 and "PLATFORMDB_SECRET_KEYS is not set" in unset.stderr

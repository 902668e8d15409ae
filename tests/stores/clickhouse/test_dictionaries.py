"""Dictionaries read PostgreSQL as a least-privilege login, never with the owner's credentials.

The PostgreSQL side (role platform_dictionary and the two views) comes from the
PostgreSQL stream's migration; until it is on main, the ClickHouse fixtures create
exactly what it specifies (tests/clickhouse/conftest.py, DICTIONARY_SQL).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse import reports
from platformdb.stores.clickhouse.dictionaries import LOGIN, collection_name, provision_login
from tests.clickhouse.conftest import SECRET, scalar

REPO = Path(__file__).resolve().parents[3]


def create(ch: Client) -> str:
    return str(scalar(ch, "SELECT create_table_query FROM system.tables"
                          " WHERE database = currentDatabase() AND name = 'campaigns_dict'"))


def test_dictionaries_read_the_views_through_a_named_collection(ch: Client) -> None:
    for name in ("organizations_dict", "campaigns_dict"):
        query = str(scalar(ch, "SELECT create_table_query FROM system.tables"
                               " WHERE database = currentDatabase() AND name = {n:String}",
                           {"n": name}))
        assert f"NAME {collection_name(str(ch.database))}" in query
        assert "password" not in query.lower() and "user" not in query.lower()
    assert "TABLE 'dictionary_campaigns'" in create(ch)
    assert "PRIMARY KEY org_id, id" in create(ch)


def test_the_dictionary_login_reads_exactly_the_two_views(pg: str) -> None:
    login = provision_login(pg, SECRET[0])
    assert urlsplit(login).username == LOGIN
    assert stat.S_IMODE(SECRET[0].stat().st_mode) == 0o600
    with psycopg.connect(login, autocommit=True) as conn:
        for view in ("dictionary_organizations", "dictionary_campaigns"):
            conn.execute(f"SELECT * FROM public.{view} LIMIT 1")
        for table in ("organizations", "campaigns", "users", "dsp_connectors", "campaign_metrics"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM public.{table} LIMIT 1")
        (superuser, bypass) = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() \
            or (None, None)
        assert superuser is False and bypass is False
    assert provision_login(pg, SECRET[0]) == login  # idempotent: the same password


@pytest.mark.slow
def test_campaign_names_are_keyed_by_org_and_campaign(ch: Client, pg: str) -> None:
    """Campaign ids are unique only within an org: the same id in two orgs keeps two names."""
    a, b, shared = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(pg) as conn:
        for org, slug in ((a, "dict-a"), (b, "dict-b")):
            conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, %s, %s)",
                         (org, slug, slug))
            conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES (%s, %s, %s)",
                         (org, shared, f"campaign of {slug}"))
    ch.command("SYSTEM RELOAD DICTIONARY campaigns_dict")
    assert reports.campaign_names(ch, a, [shared]) == {shared: "campaign of dict-a"}
    assert reports.campaign_names(ch, b, [shared]) == {shared: "campaign of dict-b"}
    assert reports.campaign_names(ch, uuid.uuid4(), [shared]) == {}


@pytest.mark.slow
def test_migrate_up_writes_no_owner_credential_into_chdb(tmp_path: Path, pg: str) -> None:
    chdb = tmp_path / "clickhouse"
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMDB_")}
    env = {**base, "PLATFORMDB_CLICKHOUSE_URL": f"chdb://{chdb}", "PLATFORMDB_POSTGRES_URL": pg,
           "PLATFORMDB_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "platformdb.cli", "migrate", "up", "--store",
                             "clickhouse"], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    owner_password = unquote(urlsplit(pg).password or "")
    assert owner_password
    leaked = [path for path in chdb.rglob("*") if path.is_file()
              and owner_password.encode() in path.read_bytes()]
    assert leaked == []
    secret = home / "secrets" / "clickhouse-dictionary-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(chdb.stat().st_mode) == 0o700
    login_password = secret.read_text().strip().encode()
    holders = {path.relative_to(chdb).parts[0] for path in chdb.rglob("*")
               if path.is_file() and login_password in path.read_bytes()}
    assert holders == {"named_collections"}  # the login's password: in the collection only

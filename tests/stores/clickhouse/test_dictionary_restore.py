"""Dictionaries survive a restore onto an empty machine, and health loads them (issue 19).

A restore into an empty target used to recreate the dictionaries reading a named
collection that target did not have ("There is no named collection
platformdb_dictionaries_platform"), while health said ClickHouse was fine.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from clickhouse_connect.driver import Client

from platformdb.clickhouse import command, connect, rows, with_database
from platformdb.ops.health import check
from platformdb.stores.clickhouse import backup as ch_backup
from platformdb.stores.clickhouse.dictionaries import (
    collection_name,
    load_problems,
    provision_login,
)
from platformdb.stores.clickhouse.driver import postgres_placeholders
from platformdb.types import Endpoints
from tests.clickhouse.conftest import SECRET


def collections(client: Client) -> set[str]:
    return {str(n) for (n,) in rows(client, "SELECT name FROM system.named_collections")}


def add_org(pg: str) -> uuid.UUID:
    org = uuid.uuid4()
    with psycopg.connect(pg) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'Restored', %s)",
                     (org, f"restored-{org.hex[:8]}"))
    return org


@pytest.mark.slow
def test_a_restore_on_an_empty_machine_brings_back_answering_dictionaries(
        ch: Client, ch_url: str, pg: str, tmp_path: Path) -> None:
    org = add_org(pg)
    folder = ch_backup.backup(ch_url, tmp_path)
    source = str(ch.database)
    # the machine is lost: the database and its named collection are gone
    command(ch, f"DROP DATABASE {source} SYNC")
    command(ch, f"DROP NAMED COLLECTION IF EXISTS {collection_name(source)}")
    assert collection_name(source) not in collections(ch)
    login = provision_login(pg, SECRET[0])
    target_url = with_database(ch_url, f"r_{uuid.uuid4().hex[:10]}")
    try:
        ch_backup.restore(target_url, folder,
                          placeholders=lambda: postgres_placeholders(login))
        with connect(target_url) as client:
            assert collection_name(str(client.database)) in collections(client)
            assert load_problems(client) == []
            assert rows(client, "SELECT dictGet('organizations_dict', 'name', tuple({o:UUID}))",
                        {"o": org}) == [("Restored",)]
    finally:
        with connect(target_url) as client:
            command(client, f"DROP DATABASE IF EXISTS {client.database} SYNC")
            command(client, f"DROP NAMED COLLECTION IF EXISTS "
                            f"{collection_name(str(client.database))}")


@pytest.mark.slow
def test_health_is_red_when_a_dictionary_cannot_read_its_source(
        ch: Client, ch_url: str, pg: str, tmp_path: Path) -> None:
    found = Endpoints(postgres=None, clickhouse=ch_url, redis=None, home=tmp_path)
    (before,) = check(found, ["clickhouse"])
    assert before.healthy, before.detail
    # the dictionaries' source breaks: its login now points at a port nothing listens on
    command(ch, f"ALTER NAMED COLLECTION {collection_name(str(ch.database))} SET port = '1'")
    problems = load_problems(ch)
    assert [p.split(" ")[1] for p in problems] == ["campaigns_dict", "organizations_dict"]
    (after,) = check(found, ["clickhouse"])
    assert not after.healthy
    assert "dictionary campaigns_dict" in after.detail
    assert len(after.problems) >= 2

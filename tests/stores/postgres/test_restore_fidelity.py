"""A PostgreSQL restore is exact: owners, grants, default privileges, RLS flags, function
settings, roles and ledger are the source's, and `migrate verify --drift` is clean right
after, whatever was restored (a backup folder, its archive, a pg_dump custom / directory /
plain file) and whatever the target held (nothing, or another database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from platformdb.backup import archive
from platformdb.binaries import pg_tool
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres import backup as pg_backup
from platformdb.stores.postgres.driver import PostgresDriver
from platformdb.stores.postgres.snapshot import normal_expression, snapshot
from tests.conftest import drop_database, fresh_name, with_database
from tests.stores.postgres.test_backup import fill


def acl(column: str, kind: str, owner: str) -> str:
    """An ACL as text; one equal to the owner's default is the default (NULL): the same
    privileges, and what pg_dump writes for it (nothing)."""
    return (f"(CASE WHEN {column} = acldefault('{kind}', {owner}) THEN NULL"
            f" ELSE {column} END)::text")


# Every object of the schema with its owner and ACL, as the catalogues hold them
# (source and target are on one server, so role names compare as they are).
CATALOG = {
    "schemas": f"SELECT nspname, pg_get_userbyid(nspowner), {acl('nspacl', 'n', 'nspowner')}"
               " FROM pg_namespace"
               " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    "relations": f"SELECT c.oid::regclass::text, c.relkind::text, pg_get_userbyid(c.relowner),"
                 f" {acl('c.relacl', 'r', 'c.relowner')}, c.relrowsecurity,"
                 " c.relforcerowsecurity FROM pg_class c"
                 " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE"
                 " 'pg\\_%' AND n.nspname <> 'information_schema' AND c.relkind <> 'i'",
    "columns": "SELECT a.attrelid::regclass::text, a.attname, a.attacl::text FROM pg_attribute a"
               " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid ="
               " c.relnamespace WHERE n.nspname = 'public' AND a.attacl IS NOT NULL",
    "functions": "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner),"
                 f" {acl('p.proacl', 'f', 'p.proowner')},"
                 " p.prosecdef, p.proconfig::text FROM pg_proc p JOIN pg_namespace n ON"
                 " n.oid = p.pronamespace WHERE n.nspname NOT LIKE 'pg\\_%'"
                 " AND n.nspname <> 'information_schema'",
    "types": "SELECT t.oid::regtype::text, pg_get_userbyid(t.typowner), t.typacl::text"
             " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
             " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')",
    "default privileges": "SELECT pg_get_userbyid(defaclrole), defaclnamespace::regnamespace"
                          "::text, defaclobjtype::text, defaclacl::text FROM pg_default_acl",
    "policies": "SELECT schemaname, tablename, policyname, roles::text, qual, with_check"
                " FROM pg_policies",
    "database": "SELECT pg_get_userbyid(datdba), (SELECT array_agg(a::text ORDER BY a::text)"
                " FROM unnest(datacl) a)::text FROM pg_database"
                " WHERE datname = current_database()",
    "ledger": "SELECT version, name, checksum FROM platformdb.schema_migrations",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: sorted(tuple(str(v) for v in row) for row in conn.execute(query))
                for name, query in CATALOG.items()}


def drift(url: str) -> list[str]:
    driver = PostgresDriver(url)
    try:
        return [d.describe() for d in Migrator(driver, discover(migrations_dir("postgresql"))
                                                ).drift()]
    finally:
        driver.close()


def assert_exact(source: str, target: str) -> None:
    assert drift(target) == []
    expected, found = catalog(source), catalog(target)
    for name in CATALOG:
        assert found[name] == expected[name], name
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert snapshot(b) == snapshot(a)
        assert pg_backup.table_states(b) == pg_backup.table_states(a)


def with_migrations_acl(url: str) -> None:
    """A copy of the migrated template, with the database grants the migrations give a
    database *now* (CREATE DATABASE ... TEMPLATE copies the contents, not the database's
    ACL; and the template's, made at the session's start, lacks grants to roles that an
    earlier test dropped and the migrations since made again) -- what a restore of a
    pg_dump file into a new database gives it too."""
    acl = pg_backup._migrations_database_acl(url, pg_backup._ledger_of(url))
    assert acl is not None
    pg_backup.apply_database_acl(url, acl)


@pytest.fixture
def source(migrated_url: str, pg_admin_url: str, migrated_template: str) -> str:
    with_migrations_acl(migrated_url)
    assert drift(migrated_url) == []
    fill(migrated_url)
    with psycopg.connect(migrated_url, autocommit=True) as conn:  # a grant no migration made
        conn.execute("GRANT SELECT ON campaigns TO platform_readonly")
    return migrated_url


@pytest.fixture
def empty_target(pg_admin_url: str) -> Iterator[str]:
    name = fresh_name("exact")
    yield with_database(pg_admin_url, name)
    drop_database(pg_admin_url, name)


def pg_dump_file(url: str, path: Path, form: str) -> Path:
    pg_backup.run_tool([pg_tool("pg_dump", url), "-F", form, "-f", str(path), "-d", url],
                       "pg_dump")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "archive", "custom", "directory", "plain"])
def test_a_restore_into_an_empty_target_is_exact(kind: str, source: str, empty_target: str,
                                                 tmp_path: Path) -> None:
    if kind in ("folder", "archive"):
        path = pg_backup.backup(source, tmp_path / "backups")
        if kind == "archive":
            path = archive.pack(path)
    else:
        path = pg_dump_file(source, tmp_path / f"dump.{kind}", kind[0])
    with archive.opened(path) as opened:
        pg_backup.restore(opened, empty_target, jobs=2)
    assert_exact(source, empty_target)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "plain"])
def test_a_restore_over_a_populated_target_is_exact(kind: str, source: str, migrated_template: str,
                                                    pg_admin_url: str, tmp_path: Path) -> None:
    name = fresh_name("populated")
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    target = with_database(pg_admin_url, name)
    try:
        with_migrations_acl(target)
        with psycopg.connect(target) as conn:  # other data, another owner on a function
            conn.execute("INSERT INTO organizations (name, slug) VALUES ('Other', 'other')")
            conn.execute("ALTER FUNCTION log_audit_event(text, text, text, jsonb)"
                         " OWNER TO CURRENT_USER")
        path = (pg_backup.backup(source, tmp_path) if kind == "folder"
                else pg_dump_file(source, tmp_path / "dump.sql", "p"))
        pg_backup.restore(path, target, force=True)
        assert_exact(source, target)
    finally:
        drop_database(pg_admin_url, name)


def test_a_reparsed_array_of_casts_is_the_same_expression() -> None:
    dumped = ("CHECK (((status)::text = ANY (ARRAY[('a'::character varying)::text,"
              " ('it''s'::character varying)::text])))")
    assert normal_expression(dumped) == (
        "CHECK (((status)::text = ANY ((ARRAY['a'::character varying,"
        " 'it''s'::character varying])::text[])))")
    mixed = "ARRAY[('a'::character varying)::text, ('b'::character varying)::name]"
    assert normal_expression(mixed) == mixed

"""Where the dictionaries read PostgreSQL: a least-privilege login, through a named collection.

``organizations_dict`` and ``campaigns_dict`` read two views,
``public.dictionary_organizations (id, name, slug, status)`` and
``public.dictionary_campaigns (org_id, id, name, status, currency)``, which the
PostgreSQL migrations create with a NOLOGIN role, ``platform_dictionary``, that
can read exactly them, across tenants. ClickHouse logs in as a member of that
role, never as the migration owner:

- ``PLATFORMDB_CLICKHOUSE_DICTIONARY_PG_URL`` names that login when it is
  configured (production: a login provisioned like any other service's);
- otherwise ``platformdb migrate up`` provisions it (:func:`provision_login`):
  ``platform_dictionary_login``, a member of ``platform_dictionary``, with a
  generated password kept in a 0600 file under ``$PLATFORMDB_HOME/secrets/``.

The login's details live in one named collection per ClickHouse database
(:func:`collection_name`); the dictionaries say ``SOURCE(POSTGRESQL(NAME ...))``,
so no password is in their DDL, in ``SHOW CREATE``, in ``system.tables`` or in
a backup's ``schema.sql``. chDB keeps the collection in its data folder, which
is private (0700).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from platformdb.clickhouse import ClickHouseError, command, quote_identifier, rows
from platformdb.errors import ConfigError, MigrationError
from platformdb.redaction import redact
from platformdb.stores.clickhouse.ddl import Topology, cluster_clause

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

ROLE = "platform_dictionary"
LOGIN = "platform_dictionary_login"
SECRET = Path("secrets") / "clickhouse-dictionary-password"
ENV_URL = "PLATFORMDB_CLICKHOUSE_DICTIONARY_PG_URL"
VIEWS = ("dictionary_organizations", "dictionary_campaigns")
NOWHERE = "postgresql://platformdb_no_dictionaries@127.0.0.1:1/none"
"""A login that cannot connect, for databases whose dictionaries are never read
(benchmarks, tests of other things): no credential to keep."""


def collection_name(database: str) -> str:
    """The named collection the dictionaries of ``database`` read PostgreSQL through."""
    return f"platformdb_dictionaries_{database}"


def secret_file(home: Path) -> Path:
    return home / SECRET


def provision_login(owner_url: str, secret: Path) -> str:
    """The URL of the dictionaries' login, created or refreshed with ``owner_url``'s rights.

    The login is ``platform_dictionary_login``, a member of ``platform_dictionary`` and
    nothing else; its password is generated once and kept in ``secret`` (0600). The
    owner's URL is used here only, and never given to ClickHouse.
    """
    password = _read_secret(secret) or secrets.token_urlsafe(32)
    try:
        with psycopg.connect(owner_url, autocommit=True, connect_timeout=10) as conn:
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
            if found is None:
                raise MigrationError(
                    f"PostgreSQL has no role {ROLE}: the PostgreSQL migration that creates it and "
                    f"the views {', '.join(VIEWS)} must be applied first (or set {ENV_URL} to a "
                    "login that can read those views)")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  (LOGIN,)).fetchone() is not None
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(f"{verb} ROLE {{}} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                                 " NOBYPASSRLS INHERIT PASSWORD {}").format(
                sql.Identifier(LOGIN), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(ROLE),
                                                          sql.Identifier(LOGIN)))
            database = conn.execute("SELECT current_database()").fetchone()
            assert database is not None
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(str(database[0])), sql.Identifier(LOGIN)))
    except psycopg.Error as exc:
        raise MigrationError(f"cannot provision the ClickHouse dictionaries' PostgreSQL login at "
                             f"{redact(owner_url)}: {str(exc).strip().splitlines()[0]}"
                             ) from exc
    _write_secret(secret, password)
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{LOGIN}:{quote(password, safe='')}@{host}").geturl()


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    path.chmod(0o600)


def ensure_collection(client: Client, login_url: str, topology: Topology | None = None) -> str:
    """Create or update the named collection for ``client``'s database; return its name."""
    parts = urlsplit(login_url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.username:
        raise ConfigError(f"the dictionaries' PostgreSQL login must be a postgresql:// URL with "
                          f"a user, got {redact(login_url)}")
    name = collection_name(str(client.database))
    quote_identifier(name)
    values = {
        "host": parts.hostname or "127.0.0.1", "port": str(parts.port or 5432),
        "user": unquote(parts.username), "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or "postgres",
    }
    assignments = ", ".join(f"{key} = {_literal(value)}" for key, value in values.items())
    on = cluster_clause(topology or Topology.single())
    exists = rows(client, "SELECT count() FROM system.named_collections WHERE name = {n:String}",
                  {"n": name})[0][0]
    if exists:
        command(client, f"ALTER NAMED COLLECTION {name}{on} SET {assignments}")
    else:
        command(client, f"CREATE NAMED COLLECTION IF NOT EXISTS {name}{on} AS {assignments}")
    return name


def drop_collection(client: Client, topology: Topology | None = None) -> None:
    command(client, f"DROP NAMED COLLECTION IF EXISTS {collection_name(str(client.database))}"
                    f"{cluster_clause(topology or Topology.single())}")


def _literal(value: str) -> str:
    """A ClickHouse string literal (named collections take no query parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_problems(client: Client) -> list[str]:
    """What keeps the dictionaries of ``client``'s database from answering: each one is
    loaded from its source now (``SYSTEM RELOAD DICTIONARY``), must then be ``LOADED`` in
    ``system.dictionaries`` and answer a query. Empty when every one answers.

    A dictionary that exists but cannot reach its source (no named collection, a wrong
    login, PostgreSQL down) is a problem: existing is not working.
    """
    database = str(client.database)
    names = [str(name) for (name,) in rows(
        client, "SELECT name FROM system.tables WHERE database = {d:String}"
                " AND engine = 'Dictionary' ORDER BY name", {"d": database})]
    problems: list[str] = []
    for name in names:
        qualified = f"{quote_identifier(database)}.{quote_identifier(name)}"
        try:
            command(client, f"SYSTEM RELOAD DICTIONARY {qualified}")
            found = rows(client, "SELECT status, last_exception FROM system.dictionaries"
                                 " WHERE database = {d:String} AND name = {n:String}",
                         {"d": database, "n": name})
            status, error = (str(found[0][0]), str(found[0][1])) if found else ("absent", "")
            if status != "LOADED":
                problems.append(f"dictionary {name} is {status}"
                                + (f": {error.splitlines()[0]}" if error else ""))
                continue
            rows(client, "SELECT count() FROM {d:Identifier}.{n:Identifier}",  # it answers
                 {"d": database, "n": name})
        except ClickHouseError as exc:
            problems.append(f"dictionary {name} does not load: {exc}")
    return problems

"""What every benchmark needs of the embedded stack: its URLs, and databases of its own.

Imported as ``from _common import ...`` (a benchmark runs as ``python bench/bench_X.py``,
so this folder is on its path).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from platformdb import embedded
from platformdb.config import load_settings
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres.driver import PostgresDriver


def stack_url(store: str) -> str:
    """The URL of ``store`` (the configured one, or the embedded stack's, started)."""
    url = embedded.endpoints(load_settings(), start=True, stores=[store]).url(store)
    assert url is not None, f"no {store} to benchmark"
    return url


def admin_url() -> str:
    """PostgreSQL's ``postgres`` database, where databases are created and dropped."""
    return urlsplit(stack_url("postgresql"))._replace(path="/postgres").geturl()


def fresh_database(admin: str, prefix: str = "bench", *, template: str | None = None,
                   migrate: bool = False) -> str:
    """A new database (a copy of ``template``'s when given; migrated when ``migrate``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(
            sql.Identifier(urlsplit(template).path.lstrip("/")))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(statement)
    url = urlsplit(admin)._replace(path=f"/{name}").geturl()
    if migrate:
        driver = PostgresDriver(url)
        try:
            Migrator(driver, discover(migrations_dir("postgresql"))).up()
        finally:
            driver.close()
    return url


def drop_database(admin: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))

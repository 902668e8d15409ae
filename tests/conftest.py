"""Shared fixtures: real servers, one fresh database (or key prefix) per test.

PostgreSQL tests run against the embedded stack and, when
``PLATFORMDB_TEST_POSTGRES_URL`` is set, against that server too (the fixture
is parametrised over both). ``PLATFORMDB_TEST_REDIS_URL`` works the same way
for Redis.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from platformdb import binaries, embedded
from platformdb.config import Settings
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.postgres.driver import PostgresDriver

REPO = Path(__file__).resolve().parents[1]
PG_TARGETS = ["embedded"] + (["external"] if os.environ.get("PLATFORMDB_TEST_POSTGRES_URL") else [])
REDIS_TARGETS = ["embedded"] + (["external"] if os.environ.get("PLATFORMDB_TEST_REDIS_URL") else [])


def clickhouse_url(settings: Settings) -> str:
    """The ClickHouse of ``settings``: the configured one, or the embedded chDB path."""
    return settings.clickhouse_url or embedded.chdb_url(settings.home)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server."""
    return urlsplit(url)._replace(path=f"/{database}").geturl()


def fresh_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def stack_home() -> Iterator[Path]:
    """The embedded stack's home; stopped at the end if this session started it."""
    home = Path(os.environ.get("PLATFORMDB_HOME") or REPO / ".platformdb").resolve()
    was_running = {s.name for s in embedded.status(home) if s.running and s.pid}
    embedded.up(home)
    yield home
    if not was_running and os.environ.get("PLATFORMDB_KEEP_STACK") != "1":
        embedded.down(home)


STACK_DATABASES = {"postgres", "template0", "template1", "platform_dev", "platform_test"}
LEFTOVER_CHECK = os.environ.get("PLATFORMDB_TEST_LEFTOVERS", "embedded")
"""``embedded`` (default): after the run, the embedded stack holds no database, key or
folder a test made. ``all`` also checks the second targets (CI, which owns them); ``off``."""


def databases_of(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def keys_of(url: str) -> set[bytes]:
    from platformdb.redis import connect

    client = connect(url)
    try:
        return set(client.scan_iter(count=1000))
    finally:
        client.close()


def scratch_folders(home: Path) -> set[str]:
    """What tests may leave in the stack's home: cluster folders, scratch and staging."""
    found = {f"test-clusters/{p.name}" for p in (home / "test-clusters").glob("*")}
    found |= {p.name for p in home.glob(".platformdb-*")}
    found |= {p.name for p in home.glob("*-scratch-*")}
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(stack_home: Path) -> Iterator[None]:
    """Fails the run when a test leaves a database, key or folder behind, even one that
    errored: the check compares the servers after the last test with before the first."""
    if LEFTOVER_CHECK == "off":
        yield
        return
    targets: dict[str, tuple[Callable[[str], set[Any]], str]] = {
        "embedded PostgreSQL": (databases_of,
                                embedded.EmbeddedPostgres(stack_home).url("postgres")),
        "embedded Redis": (keys_of, embedded.EmbeddedRedis(stack_home).url()),
    }
    if LEFTOVER_CHECK == "all":
        if os.environ.get("PLATFORMDB_TEST_POSTGRES_URL"):
            targets["second PostgreSQL"] = (
                databases_of, with_database(os.environ["PLATFORMDB_TEST_POSTGRES_URL"], "postgres"))
        if os.environ.get("PLATFORMDB_TEST_REDIS_URL"):
            targets["second Redis"] = (keys_of, os.environ["PLATFORMDB_TEST_REDIS_URL"])
    before = {name: read(url) for name, (read, url) in targets.items()}
    folders = scratch_folders(stack_home)
    yield
    left: list[str] = []
    for name, (read, url) in targets.items():
        extra = read(url) - before[name] - STACK_DATABASES
        if extra:
            shown = sorted(x.decode() if isinstance(x, bytes) else x for x in extra)
            left.append(f"{name}: {len(shown)} left ({', '.join(shown[:8])}"
                        f"{', ...' if len(shown) > 8 else ''})")
    extra_folders = scratch_folders(stack_home) - folders
    if extra_folders:
        left.append(f"{stack_home}: {', '.join(sorted(extra_folders))}")
    if left:
        pytest.fail("tests left things behind: " + "; ".join(left), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """End the run with what was skipped for a missing tool and how to install it; with
    PLATFORMDB_TEST_NO_SKIPS=1 (CI, which installs every tool) any skip fails the run."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple)
                     else report.longrepr).removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped")
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"{count:4d}  {reason}")
    if reasons and os.environ.get("PLATFORMDB_TEST_NO_SKIPS") == "1":
        terminalreporter.write_line(
            f"error: {sum(reasons.values())} test(s) skipped and PLATFORMDB_TEST_NO_SKIPS=1",
            red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (os.environ.get("PLATFORMDB_TEST_NO_SKIPS") == "1"
            and session.config.pluginmanager.get_plugin("terminalreporter") is not None
            and session.config.pluginmanager.get_plugin("terminalreporter").stats.get("skipped")
            and exitstatus == 0):
        session.exitstatus = 1


@pytest.fixture
def cluster_dir(stack_home: Path) -> Iterator[Path]:
    """A folder for a test's own PostgreSQL cluster.

    Not under pytest's tmp_path: pytest keeps that 0700, and postgres runs as
    another account when the tests run as root.
    """
    path = stack_home / "test-clusters" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", params=PG_TARGETS)
def pg_admin_url(request: pytest.FixtureRequest, stack_home: Path) -> str:
    """A superuser URL to the ``postgres`` database of each target server."""
    if request.param == "external":
        return with_database(os.environ["PLATFORMDB_TEST_POSTGRES_URL"], "postgres")
    return embedded.EmbeddedPostgres(stack_home).url("postgres")


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A new, empty database for one test."""
    name = fresh_name()
    url = create_database(pg_admin_url, name)
    yield url
    drop_database(pg_admin_url, name)


def migrated_database(admin_url: str, name: str) -> str:
    """Create database ``name`` with every PostgreSQL migration applied; its URL."""
    url = create_database(admin_url, name)
    driver = PostgresDriver(url)
    try:
        Migrator(driver, discover(migrations_dir("postgresql"))).up()
    finally:
        driver.close()
    return url


def embedded_admin_url(home: Path) -> str:
    """A superuser URL to the embedded server's ``postgres`` database (for the tests that
    exercise the platform's own machinery -- journals, kill points -- on one server)."""
    return embedded.EmbeddedPostgres(home).url("postgres")


@pytest.fixture(scope="session")
def migrated_template(pg_admin_url: str) -> Iterator[str]:
    """A database with every PostgreSQL migration applied, used as a template."""
    name = fresh_name("tpl")
    migrated_database(pg_admin_url, name)
    yield name
    drop_database(pg_admin_url, name)


@pytest.fixture
def migrated_url(pg_admin_url: str, migrated_template: str) -> Iterator[str]:
    """A new database with the whole schema, copied from the template."""
    name = fresh_name()
    url = create_database(pg_admin_url, name, template=migrated_template)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", postgres_url=pg_url)


@pytest.fixture(scope="session", params=REDIS_TARGETS)
def redis_url(request: pytest.FixtureRequest, stack_home: Path) -> str:
    """A running Redis-compatible server for each target."""
    if request.param == "external":
        return os.environ["PLATFORMDB_TEST_REDIS_URL"]
    return embedded.EmbeddedRedis(stack_home).url()


@pytest.fixture(scope="session")
def service_logins(stack_home: Path) -> Path:
    """The embedded server's service logins (``svc_api``...), created here rather than left
    to ``platformdb up``, which makes them only where PgBouncer runs; their passwords are
    kept under the stack's home."""
    from platformdb.stores.postgres import pgbouncer

    pgbouncer.provision_logins(embedded.EmbeddedPostgres(stack_home).url("postgres"), stack_home)
    return stack_home


@pytest.fixture(params=["direct", "pgbouncer"])
def service_route(request: pytest.FixtureRequest, stack_home: Path,
                  service_logins: Path) -> Callable[[str], str]:
    """How a service reaches a database of the embedded PostgreSQL: ``direct``, or through
    the stack's PgBouncer (transaction pooling); as the ``svc_api`` login (platform_app)
    either way. Call it with a URL of that server to get the service's URL to the same
    database. The PgBouncer route skips where no pgbouncer binary is installed."""
    from platformdb.stores.postgres import pgbouncer

    bouncer = embedded.EmbeddedPgBouncer(stack_home)
    if request.param == "pgbouncer" and bouncer.pid() is None:
        pytest.skip(f"pgbouncer not installed ({binaries.PGBOUNCER_INSTALL_HINT})"
                    if binaries.pgbouncer() is None else "the stack's PgBouncer is not running")
    server = embedded.EmbeddedPostgres(stack_home)

    def route(url: str) -> str:
        database = urlsplit(url).path.lstrip("/")
        if request.param == "pgbouncer":
            return bouncer.url("svc_api", database)
        return pgbouncer.service_url(stack_home, "svc_api", "127.0.0.1", server.port or 0,
                                     database)

    route.kind = request.param  # type: ignore[attr-defined]
    return route

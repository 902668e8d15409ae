"""Other orgs are never touched: concurrent writers lose nothing, the production guard."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from platformdb.clickhouse import connect as ch_connect
from platformdb.errors import ValidationError
from platformdb.ops import tenant
from platformdb.redis import JobQueue
from platformdb.types import Endpoints
from tests.conftest import drop_database, fresh_name, with_database
from tests.ops.tenant.conftest import Deployment, add_org, counts

ROUNDS = 40


@pytest.mark.slow
def test_a_delete_loses_no_row_of_other_orgs_writing_at_the_same_time(
        deployment: Deployment) -> None:
    a = add_org(deployment, "alpha", ch_rows=200, jobs=20)
    b = add_org(deployment, "bravo", jobs=0)
    before = counts(deployment, b)
    written = {"postgresql": 0, "clickhouse": 0, "redis": 0}
    errors: list[BaseException] = []
    go = threading.Event()

    def postgres() -> None:
        with deployment.pg() as conn:
            go.wait()
            for i in range(ROUNDS):
                with conn.transaction():
                    conn.execute("SELECT set_tenant(%s)", (b,))
                    conn.execute("INSERT INTO campaigns (org_id, name) VALUES (%s, %s)",
                                 (b, f"concurrent {i}"))
                written["postgresql"] += 1

    def clickhouse() -> None:
        assert deployment.endpoints.clickhouse is not None
        with ch_connect(deployment.endpoints.clickhouse) as client:
            go.wait()
            for i in range(ROUNDS):
                client.command("INSERT INTO api_logs (timestamp, org_id, request_id, method,"
                               " path, status_code) VALUES (now64(3), {org:UUID}, {r:String},"
                               " 'GET', '/x', 200)", parameters={"org": b, "r": str(i)})
                written["clickhouse"] += 1

    def redis() -> None:
        client = deployment.redis()
        try:
            queue = JobQueue(client, "etl", prefix=deployment.prefix)
            go.wait()
            for i in range(ROUNDS):
                queue.enqueue({"i": i}, org_id=b)
                written["redis"] += 1
        finally:
            client.close()

    def guarded(work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below
                errors.append(exc)
        return threading.Thread(target=run)

    threads = [guarded(work) for work in (postgres, clickhouse, redis)]
    for thread in threads:
        thread.start()
    go.set()
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert written == {"postgresql": ROUNDS, "clickhouse": ROUNDS, "redis": ROUNDS}
    after = counts(deployment, b)
    assert after["postgresql"]["campaigns"] == before["postgresql"]["campaigns"] + ROUNDS
    assert after["clickhouse"]["api_logs"] == before["clickhouse"]["api_logs"] + ROUNDS
    assert after["redis"]["job"] == before["redis"]["job"] + ROUNDS
    assert all(n == 0 for found in counts(deployment, a).values() for n in found.values())


@pytest.mark.slow
def test_delete_of_one_org_leaves_another_untouched(deployment: Deployment) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    before = tenant.checksums(deployment.endpoints, b, redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, "alpha", yes=True, redis_prefix=deployment.prefix)
    assert tenant.checksums(deployment.endpoints, b, redis_prefix=deployment.prefix) == before
    assert sum(counts(deployment, a)["postgresql"].values()) == 0


@pytest.fixture
def production(deployment: Deployment) -> Iterator[Endpoints]:
    """The deployment's ClickHouse and Redis with a PostgreSQL database named like production."""
    assert deployment.endpoints.postgres is not None
    url = deployment.endpoints.postgres
    admin = with_database(url, "postgres")
    name = "platform_" + fresh_name("prod")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{urlsplit(url).path.lstrip("/")}"')
    try:
        yield deployment.endpoints.replace(postgres=with_database(url, name))
    finally:
        drop_database(admin, name)


@pytest.mark.slow
def test_delete_refuses_a_database_that_does_not_look_like_development(
        production: Endpoints, deployment: Deployment) -> None:
    org = str(uuid.uuid4())
    with psycopg.connect(production.postgres or "", autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'Prod', 'prod')",
                     (org,))
    assert not tenant.looks_like_development(production)
    with pytest.raises(ValidationError, match="does not look like a development database"):
        tenant.delete_tenant(production, "prod", yes=True, redis_prefix=deployment.prefix)
    assert tenant.show_tenant(production, "prod").table("postgresql")["organizations"]["rows"] == 1
    done = tenant.delete_tenant(production, "prod", yes=True, force=True,
                                redis_prefix=deployment.prefix)
    assert done.removed["postgresql"]["organizations"] == 1


@pytest.mark.parametrize(("url", "development"), [
    ("postgresql://u:p@127.0.0.1:5432/platform_dev", True),
    ("postgresql://u:p@localhost/t_0123", True),
    ("postgresql://u:p@[::1]/demo", True),
    ("postgresql://u:p@127.0.0.1/platform", False),
    ("postgresql://u:p@db.internal/platform_dev", False),
    ("postgresql://u:p@10.0.0.5/test", False),
])
def test_the_development_rule(url: str, development: bool) -> None:
    found = Endpoints(postgres=url, clickhouse=None, redis=None)
    assert tenant.looks_like_development(found) is development


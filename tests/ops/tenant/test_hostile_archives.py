"""Edited archives write into no org: signature first, then every row, key and job of the
archive's org, with foreign keys, CHECKs and triggers on (real stores)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from platformdb.errors import ValidationError
from platformdb.ops import tenant
from platformdb.tenant import keys
from tests.conftest import fresh_name
from tests.ops.tenant.conftest import Deployment, add_org, counts, digest
from tests.ops.tenant.forge import manifest_of, pack, retarget_csv_row, unpack

Edit = Callable[[dict[str, bytes], Deployment, str, str], None]


def nothing(found: dict[str, dict[str, int]]) -> bool:
    return all(n == 0 for tables in found.values() for n in tables.values())


def staging_databases(dep: Deployment) -> list[str]:
    """The deployment's ClickHouse staging databases of an import."""
    return [str(name) for (name,) in dep.ch.query(
        "SELECT name FROM system.databases WHERE startsWith(name, {p:String})",
        parameters={"p": f"{dep.ch.database}_tenant_import"}).result_rows]


def edit_postgres(files: dict[str, bytes], dep: Deployment, a: str, b: str) -> None:
    """A backdoor account in org B: A's first user copied, moved to B under a new id."""
    files["postgresql/users.csv"] = retarget_csv_row(files["postgresql/users.csv"], a, b,
                                                     new_id=str(uuid.uuid4()))


def edit_clickhouse(files: dict[str, bytes], dep: Deployment, a: str, b: str) -> None:
    """One of A's raw metric rows retargeted to B (Native blocks append)."""
    extra = dep.ch.raw_query(
        "SELECT * REPLACE (toUUID({b:String}) AS org_id) FROM"
        " (SELECT * FROM campaign_metrics_raw WHERE org_id = {a:UUID} LIMIT 1)",
        parameters={"a": a, "b": b}, fmt="Native")
    assert extra
    files["clickhouse/campaign_metrics_raw.native"] += extra


def _jobs(files: dict[str, bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in files["redis/jobs.jsonl"].splitlines() if line]


def _put_jobs(files: dict[str, bytes], jobs: list[dict[str, object]]) -> None:
    files["redis/jobs.jsonl"] = b"".join(json.dumps(j, sort_keys=True).encode() + b"\n"
                                         for j in jobs)


def edit_redis_job(files: dict[str, bytes], dep: Deployment, a: str, b: str) -> None:
    """A job in B's name: member and hash retargeted."""
    jobs = _jobs(files)
    forged = json.loads(json.dumps(jobs[0]))
    job_id = str(uuid.uuid4())
    forged["member"] = f"{b}:{job_id}"
    forged["fields"].update(org_id=b, id=job_id)
    _put_jobs(files, [*jobs, forged])


def edit_redis_cache_key(files: dict[str, bytes], dep: Deployment, a: str, b: str) -> None:
    """A's own job, but its "queue" is B's cache entry: the written list would break it."""
    jobs = _jobs(files)
    forged = json.loads(json.dumps(jobs[0]))
    forged["queue"] = f"cache:{{{b}:campaigns}}:c1"
    _put_jobs(files, [*jobs, forged])


def edit_redis_payload(files: dict[str, bytes], dep: Deployment, a: str, b: str) -> None:
    """A's job whose payload tells the worker to act for B."""
    jobs = _jobs(files)
    forged = json.loads(json.dumps(jobs[0]))
    job_id = str(uuid.uuid4())
    forged["member"] = f"{a}:{job_id}"
    forged["fields"].update(id=job_id, payload=json.dumps({"org_id": b, "n": 1}))
    _put_jobs(files, [*jobs, forged])


EDITS: dict[str, tuple[Edit, str]] = {
    "postgresql": (edit_postgres, r"postgresql/users\.csv line 5: org_id"),
    "clickhouse": (edit_clickhouse, r"clickhouse/campaign_metrics_raw\.native row \d+"),
    "redis-job": (edit_redis_job, r"redis/jobs\.jsonl line 5: job"),
    "redis-key": (edit_redis_cache_key, r"redis/jobs\.jsonl line 5: queue"),
    "redis-payload": (edit_redis_payload, r"redis/jobs\.jsonl line 5: payload org_id"),
}


@pytest.fixture
def attacker(tmp_path: Path) -> keys.KeyRing:
    return keys.KeyRing(tmp_path / "attacker-keys")


@pytest.mark.slow
@pytest.mark.parametrize("store", sorted(EDITS))
def test_an_edited_archive_is_refused_and_changes_nothing_anywhere(
        deployment: Deployment, tmp_path: Path, attacker: keys.KeyRing, store: str) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    genuine = tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                                   redis_prefix=deployment.prefix).path
    files = unpack(genuine)
    edit, where = EDITS[store]
    edit(files, deployment, a, b)
    forged = pack(files, tmp_path / "forged.tar", ring=attacker)
    before = {org: digest(deployment, org) for org in (a, b)}

    # re-signed with a foreign key: refused before any member is read
    with pytest.raises(ValidationError, match="does not trust"):
        tenant.import_tenant(deployment.endpoints, forged, replace=True,
                             redis_prefix=deployment.prefix)
    # the attacker's key named: the rows of another org refuse the whole archive
    trust = [keys.PublicKey(attacker.current()[1].raw)]
    with pytest.raises(ValidationError, match=where):
        tenant.import_tenant(deployment.endpoints, forged, replace=True,
                             redis_prefix=deployment.prefix, trust=trust)
    assert {org: digest(deployment, org) for org in (a, b)} == before

    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    after_delete = digest(deployment, b)
    with pytest.raises(ValidationError, match=where):
        tenant.import_tenant(deployment.endpoints, forged, redis_prefix=deployment.prefix,
                             trust=trust)
    assert nothing(counts(deployment, a))
    assert digest(deployment, b) == after_delete == before[b]
    assert staging_databases(deployment) == []


@pytest.mark.slow
def test_an_edit_without_a_new_signature_is_refused(deployment: Deployment,
                                                    tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    files = unpack(tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                                        redis_prefix=deployment.prefix).path)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    edit_postgres(files, deployment, a, b)
    # checksums recomputed, the old signature kept: the manifest no longer matches it
    with pytest.raises(ValidationError, match="does not match its signature"):
        tenant.import_tenant(deployment.endpoints, pack(files, tmp_path / "e.tar", ring=None),
                             redis_prefix=deployment.prefix)
    # no signature at all
    del files["manifest.sig"]
    with pytest.raises(ValidationError, match="is not signed"):
        tenant.import_tenant(deployment.endpoints, pack(files, tmp_path / "u.tar", ring=None),
                             redis_prefix=deployment.prefix)
    # a member changed, the manifest (and its signature) untouched
    files = unpack(tmp_path / "a.tar")
    files["postgresql/users.csv"] += b"x"
    with pytest.raises(ValidationError, match="does not match its manifest"):
        tenant.import_tenant(deployment.endpoints,
                             pack(files, tmp_path / "m.tar", ring=None, rehash=False),
                             redis_prefix=deployment.prefix)
    assert nothing(counts(deployment, a))


@pytest.mark.slow
def test_foreign_keys_and_checks_stay_on_during_import(deployment: Deployment,
                                                       tmp_path: Path) -> None:
    """A row of the archive's own org that no constraint allows is refused too."""
    a = add_org(deployment, "alpha")
    files = unpack(tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                                        redis_prefix=deployment.prefix).path)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    ours = tenant.keyring(deployment.endpoints)
    roles = files["postgresql/user_roles.csv"].split(b"\n")
    header = roles[0].decode().split(",")
    cells = roles[1].decode().split(",")
    cells[header.index("user_id")] = str(uuid.uuid4())  # a user the org does not have
    dangling = dict(files, **{"postgresql/user_roles.csv": files["postgresql/user_roles.csv"]
                              + ",".join(cells).encode() + b"\n"})
    with pytest.raises(ValidationError, match=r"postgresql/user_roles\.csv: .*foreign key"):
        tenant.import_tenant(deployment.endpoints, pack(dangling, tmp_path / "fk.tar",
                                                        ring=ours),
                             redis_prefix=deployment.prefix)
    weak = dict(files, **{"postgresql/users.csv": files["postgresql/users.csv"].replace(
        b"$2b$12$", b"$2b$04$", 1)})  # a bcrypt cost below 10
    with pytest.raises(ValidationError, match=r"postgresql/users\.csv: .*chk_users_password"):
        tenant.import_tenant(deployment.endpoints, pack(weak, tmp_path / "ck.tar", ring=ours),
                             redis_prefix=deployment.prefix)
    assert nothing(counts(deployment, a))
    # the genuine archive loads, its audit trail exactly as exported and nothing more
    with deployment.pg() as conn:
        audit_before = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
    done = tenant.import_tenant(deployment.endpoints, tmp_path / "a.tar",
                                redis_prefix=deployment.prefix)
    exported = manifest_of(files)["files"]["postgresql/audit_logs.csv"]["rows"]
    assert done.counts["postgresql"]["audit_logs"] == exported
    with deployment.pg() as conn:
        audit_after = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
    assert audit_before is not None and audit_after is not None
    assert audit_after[0] - audit_before[0] == exported


@pytest.fixture
def app_login(deployment: Deployment) -> Iterator[str]:
    """A login of the application role (not the owner that runs migrations)."""
    assert deployment.endpoints.postgres is not None
    role, password = fresh_name("t_app"), uuid.uuid4().hex
    with deployment.pg() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE platform_app").format(
            sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(deployment.endpoints.postgres)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield parts._replace(netloc=f"{role}:{password}@{host}").geturl()
    finally:
        with deployment.pg() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.slow
def test_only_the_owner_may_load_rows_without_audit(deployment: Deployment,
                                                    app_login: str) -> None:
    org = add_org(deployment, "alpha", ch_rows=0, jobs=0)

    def audited(url: str) -> int:
        name = f"c {uuid.uuid4().hex[:6]}"
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT set_tenant(%s)", (org,))
            conn.execute("SELECT set_config('platformdb.tenant_import', %s, true)", (org,))
            conn.execute("INSERT INTO campaigns (org_id, name) VALUES (%s, %s)", (org, name))
        with deployment.pg() as conn, conn.transaction():
            conn.execute("SELECT set_tenant(%s)", (org,))
            row = conn.execute("SELECT count(*) FROM audit_logs WHERE org_id = %s AND"
                               " new_values ->> 'name' = %s", (org, name)).fetchone()
        return int(row[0]) if row else 0

    assert deployment.endpoints.postgres is not None
    assert audited(app_login) == 1  # the setting means nothing to the application
    assert audited(deployment.endpoints.postgres) == 0  # the owner's import path


@pytest.fixture
def owner_member_login(deployment: Deployment) -> Iterator[str]:
    """A login that is no superuser and has no BYPASSRLS, but belongs to the role that owns
    the tables (the owner that runs migrations)."""
    assert deployment.endpoints.postgres is not None
    role, password = fresh_name("t_importer"), uuid.uuid4().hex
    with deployment.pg() as conn:
        owner = conn.execute("SELECT relowner::regrole::text FROM pg_class"
                             " WHERE oid = 'public.audit_logs'::regclass").fetchone()
        assert owner is not None
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}"
                             " IN ROLE {}").format(sql.Identifier(role), sql.Literal(password),
                                                   sql.Identifier(str(owner[0]))))
    parts = urlsplit(deployment.endpoints.postgres)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield parts._replace(netloc=f"{role}:{password}@{host}").geturl()
    finally:
        with deployment.pg() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.slow
def test_import_needs_no_superuser(deployment: Deployment, owner_member_login: str,
                                   tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    before = {org: digest(deployment, org) for org in (a, b)}
    tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    with psycopg.connect(owner_member_login) as conn:
        assert conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles"
                            " WHERE rolname = current_user").fetchone() == (False,)
    importer = deployment.endpoints.replace(postgres=owner_member_login)
    tenant.import_tenant(importer, tmp_path / "a.tar", redis_prefix=deployment.prefix)
    after = {org: digest(deployment, org) for org in (a, b)}
    assert after[b] == before[b]
    assert after[a]["postgresql"] == before[a]["postgresql"]  # audit trail included
    assert after[a]["clickhouse"] == before[a]["clickhouse"]


@pytest.mark.slow
def test_an_import_that_fails_after_clickhouse_switched_leaves_no_staging_database(
        deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdb.errors import CheckFailed
    from platformdb.stores.redis import tenant as redis_tenant

    a = add_org(deployment, "alpha")
    tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)

    def fail(*args: object, **kwargs: object) -> int:
        raise CheckFailed("injected: Redis refused")

    monkeypatch.setattr(redis_tenant, "import_jobs", fail)
    with pytest.raises(CheckFailed, match="injected"):
        tenant.import_tenant(deployment.endpoints, tmp_path / "a.tar",
                             redis_prefix=deployment.prefix)
    assert nothing(counts(deployment, a))
    assert staging_databases(deployment) == []

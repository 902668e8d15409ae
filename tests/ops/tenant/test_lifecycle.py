"""export -> delete -> import across PostgreSQL, ClickHouse and Redis, on real stores."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import pytest

from platformdb.errors import CheckFailed
from platformdb.ops import tenant
from platformdb.stores.clickhouse import tenant as ch_tenant
from platformdb.stores.redis import tenant as redis_tenant
from tests.ops.tenant.conftest import (
    Deployment,
    add_clickhouse_rows,
    add_org,
    counts,
    differences,
    digest,
)


def native(org: str) -> bytes:
    """A UUID as ClickHouse's Native format writes it: two little-endian 64-bit halves."""
    raw = uuid.UUID(org).bytes
    return raw[:8][::-1] + raw[8:][::-1]


def forms(org: str) -> list[bytes]:
    return [org.encode(), uuid.UUID(org).bytes, native(org)]


def nothing(found: dict[str, dict[str, int]]) -> bool:
    return all(n == 0 for tables in found.values() for n in tables.values())


def test_export_delete_import_reproduces_the_org_and_leaves_others_alone(
        deployment: Deployment, tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo", users=2, ch_rows=20)
    c = add_org(deployment, "charlie", jobs=1)
    before = {org: digest(deployment, org) for org in (a, b, c)}
    assert all(before[a]["postgresql"].values())

    exported = tenant.export_tenant(deployment.endpoints, "alpha", tmp_path / "alpha.tar",
                                    redis_prefix=deployment.prefix)
    assert exported.counts["postgresql"]["users"] == 3
    assert exported.counts["clickhouse"]["campaign_metrics_raw"] == 50
    assert exported.counts["redis"] == {"jobs": 4}

    deleted = tenant.delete_tenant(deployment.endpoints, a, yes=True,
                                   redis_prefix=deployment.prefix)
    assert deleted.removed["postgresql"]["users"] == 3
    assert deleted.removed["clickhouse"]["campaign_metrics_raw"] == 50
    assert deleted.removed["redis"]["session"] == 2  # the index and the session
    assert nothing(counts(deployment, a))
    assert differences({org: digest(deployment, org) for org in (b, c)},
                       {b: before[b], c: before[c]}) == []

    imported = tenant.import_tenant(deployment.endpoints, tmp_path / "alpha.tar",
                                    redis_prefix=deployment.prefix)
    assert imported.counts["postgresql"] == exported.counts["postgresql"]
    after = digest(deployment, a)
    # sessions, cache entries and rate-limit windows are not exported (docs/TENANTS.md)
    kept = {k: v for k, v in before[a]["redis"].items() if k == "job"}
    assert after["redis"] == {**{k: "0:" + after["redis"][k].split(":")[1]
                                 for k in after["redis"] if k != "job"}, **kept}
    assert after["postgresql"] == before[a]["postgresql"]
    assert after["clickhouse"] == before[a]["clickhouse"]
    assert differences({org: digest(deployment, org) for org in (b, c)},
                       {b: before[b], c: before[c]}) == []


def test_export_of_one_org_holds_no_row_or_key_of_another(deployment: Deployment,
                                                          tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        blobs = {name: tar.extractfile(name).read() for name in names}  # type: ignore[union-attr]
    assert {"manifest.json", "postgresql/users.csv", "clickhouse/campaign_metrics_raw.native",
            "redis/jobs.jsonl"} <= set(names)
    for name, blob in blobs.items():
        assert not any(form in blob for form in forms(b)), name
    assert a.encode() in blobs["postgresql/users.csv"]
    assert native(a) in blobs["clickhouse/campaign_metrics_raw.native"]


@pytest.mark.slow
def test_an_interrupted_delete_finishes_when_run_again(deployment: Deployment,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    other = digest(deployment, b)

    def fail(*args: object, **kwargs: object) -> dict[str, int]:
        raise RuntimeError("injected: ClickHouse went away")

    monkeypatch.setattr(ch_tenant, "delete", fail)
    with pytest.raises(RuntimeError, match="injected"):
        tenant.delete_tenant(deployment.endpoints, "alpha", yes=True,
                             redis_prefix=deployment.prefix)
    left = counts(deployment, a)
    assert sum(left["postgresql"].values()) == 0
    assert sum(left["clickhouse"].values()) > 0 and sum(left["redis"].values()) > 0
    monkeypatch.undo()
    # the slug went with the organizations row; the id still finds what is left
    shown = tenant.show_tenant(deployment.endpoints, a, redis_prefix=deployment.prefix)
    assert shown.slug is None and shown.total("clickhouse") > 0
    assert a in {t.id for t in tenant.list_tenants(deployment.endpoints,
                                                   redis_prefix=deployment.prefix)}
    again = tenant.delete_tenant(deployment.endpoints, a, yes=True,
                                 redis_prefix=deployment.prefix)
    assert sum(again.removed["postgresql"].values()) == 0
    assert sum(again.removed["clickhouse"].values()) > 0
    assert nothing(counts(deployment, a))
    assert digest(deployment, b) == other


@pytest.mark.slow
def test_delete_leaves_one_erasure_record_and_keep_audit_keeps_the_trail(
        deployment: Deployment) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, b, yes=True, keep_audit=True,
                         redis_prefix=deployment.prefix)
    with deployment.pg() as conn:
        rows = conn.execute("SELECT org_id::text, action, count(*) FROM audit_logs"
                            " GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    actions = {(org, action): n for org, action, n in rows}
    assert actions[(a, "TENANT_ERASED")] == 1  # a re-run that found nothing wrote none
    assert {action for org, action in actions if org == a} == {"TENANT_ERASED"}
    assert actions[(b, "DELETE")] > 0 and actions[(b, "INSERT")] > 0


@pytest.mark.slow
def test_a_failing_import_leaves_nothing_behind(deployment: Deployment, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    a = add_org(deployment, "alpha")
    b = add_org(deployment, "bravo")
    tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    other = digest(deployment, b)

    def fail(*args: object, **kwargs: object) -> int:
        raise CheckFailed("injected: Redis refused")

    monkeypatch.setattr(redis_tenant, "import_jobs", fail)
    with pytest.raises(CheckFailed, match="injected"):
        tenant.import_tenant(deployment.endpoints, tmp_path / "a.tar",
                             redis_prefix=deployment.prefix)
    assert nothing(counts(deployment, a))
    assert digest(deployment, b) == other


@pytest.mark.slow
def test_rows_written_during_an_export_never_make_its_counts_disagree(
        deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = add_org(deployment, "alpha")
    stream = ch_tenant._stream
    calls: list[str] = []

    def racing(client: object, database: str, table: str, org: uuid.UUID, path: Path) -> None:
        if not calls:  # a writer inserts for the org while the first table streams
            add_clickhouse_rows(deployment, a, 7)
        calls.append(table)
        stream(client, database, table, org, path)  # type: ignore[arg-type]

    monkeypatch.setattr(ch_tenant, "_stream", racing)
    exported = tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                                    redis_prefix=deployment.prefix)
    assert len(calls) > len(exported.counts["clickhouse"])  # read again, from snapshots
    assert exported.counts["clickhouse"]["campaign_metrics_raw"] == 57
    monkeypatch.undo()
    tenant.delete_tenant(deployment.endpoints, a, yes=True, redis_prefix=deployment.prefix)
    done = tenant.import_tenant(deployment.endpoints, tmp_path / "a.tar",
                                redis_prefix=deployment.prefix)  # counts are checked
    assert done.counts["clickhouse"] == exported.counts["clickhouse"]


@pytest.mark.slow
def test_an_org_moves_to_another_deployment(deployment: Deployment, elsewhere: Deployment,
                                            tmp_path: Path) -> None:
    a = add_org(deployment, "alpha")
    add_org(elsewhere, "local-org")
    before = digest(deployment, a)
    tenant.export_tenant(deployment.endpoints, "alpha", tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    tenant.import_tenant(elsewhere.endpoints, tmp_path / "a.tar", redis_prefix=elsewhere.prefix)
    moved = digest(elsewhere, a)
    assert moved["postgresql"] == before["postgresql"]
    assert moved["clickhouse"] == before["clickhouse"]
    assert moved["redis"]["job"] == before["redis"]["job"]
    assert digest(deployment, a) == before  # an export changes nothing


@pytest.mark.slow
def test_a_failing_replace_puts_the_old_org_back(deployment: Deployment, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    a = add_org(deployment, "alpha")
    tenant.export_tenant(deployment.endpoints, a, tmp_path / "a.tar",
                         redis_prefix=deployment.prefix)
    with deployment.pg() as conn, conn.transaction():  # the org moves on after the export
        conn.execute("SELECT set_tenant(%s)", (a,))
        conn.execute("UPDATE campaigns SET name = name || ' (renamed)' WHERE org_id = %s", (a,))
    add_clickhouse_rows(deployment, a, 5)
    current = digest(deployment, a)
    imported: list[int] = []
    real = redis_tenant.import_jobs

    def fail_once(*args: object, **kwargs: object) -> int:
        if not imported:
            imported.append(1)
            raise CheckFailed("injected: Redis refused")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis_tenant, "import_jobs", fail_once)
    with pytest.raises(CheckFailed, match="injected"):
        tenant.import_tenant(deployment.endpoints, tmp_path / "a.tar", replace=True,
                             redis_prefix=deployment.prefix)
    assert differences({a: digest(deployment, a)}, {a: current}) == []


@pytest.mark.slow
def test_export_delete_and_import_report_each_store_while_they_run(deployment: Deployment,
                                                                  tmp_path: Path) -> None:
    from platformdb.ops.context import Context
    from platformdb.progress import Progress, Task

    class Seen(Progress):
        def __init__(self) -> None:
            self.tasks: list[Task] = []

        def opened(self, task: Task) -> None:
            self.tasks.append(task)

    add_org(deployment, "papa")
    seen = Seen()
    ctx = Context(deployment.endpoints, progress=seen)
    archive = tmp_path / "papa.tar"
    tenant.export_tenant(ctx, "papa", archive, redis_prefix=deployment.prefix)
    tenant.delete_tenant(ctx, "papa", yes=True, redis_prefix=deployment.prefix)
    tenant.import_tenant(ctx, archive, redis_prefix=deployment.prefix)
    described = [task.description for task in seen.tasks]
    stores = ("postgresql", "clickhouse", "redis")
    assert {f"tenant export: reading {store}" for store in stores} <= set(described)
    assert {f"tenant delete: {store}" for store in stores} <= set(described)
    assert {f"tenant import: loading {store}" for store in stores} <= set(described)
    writing = next(task for task in seen.tasks if task.description.startswith(
        "tenant export: writing"))
    assert writing.unit == "bytes" and writing.total
    overall = {task.description: task for task in seen.tasks}
    assert overall["tenant delete papa"].completed == 3
    assert all(task.ended is not None and not task.failed for task in seen.tasks)

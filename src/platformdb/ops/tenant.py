"""The tenant lifecycle across the three stores: list, show, export, delete, import.

The org is the platform's unit: its ``organizations.id`` is the ``org_id`` of
every PostgreSQL row, every ClickHouse row and (inside the hash tag) every Redis
key it owns. These functions act on one org in all three stores at once; they
take :class:`~platformdb.types.Endpoints` (resolved by the caller; nothing here
starts a server) and a Redis key prefix (the deployment's, ``""`` by default).

- :func:`list_tenants` / :func:`show_tenant`: sizes per store and recent activity.
- :func:`export_tenant`: one archive (:mod:`.archive`): PostgreSQL rows from one
  snapshot (CSV), ClickHouse rows (Native), queued jobs (JSON lines), a manifest.
- :func:`delete_tenant`: PostgreSQL in one transaction, then ClickHouse, then Redis;
  each step finds what is left, so an interrupted delete finishes when re-run.
- :func:`import_tenant`: all or nothing; PostgreSQL stays uncommitted until
  ClickHouse and Redis are in, and a failure undoes what was done.
- :func:`usage_metrics` (:mod:`.usage`): per-tenant sizes for ``stats`` and the exporter.

docs/TENANTS.md describes the commands, the archive and every decision.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformdb.config import DEV_WORDS, development_url, mask_password
from platformdb.errors import CheckFailed, ConfigError, ValidationError
from platformdb.stores import open_store
from platformdb.stores.clickhouse import tenant as ch
from platformdb.stores.postgres import tenant as pg
from platformdb.stores.redis import tenant as rd
from platformdb.tenant import archive
from platformdb.types import Endpoints

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

    from platformdb.redis.client import SyncClient


__all__ = ["DEV_WORDS", "Deleted", "Exported", "Imported", "Tenant", "checksums",
           "delete_tenant", "export_tenant", "import_tenant", "list_tenants",
           "looks_like_development", "remaining", "resolve", "schema_heads", "show_tenant",
           "usage_metrics"]


# ------------------------------------------------------------------ connections


def _url(endpoints: Endpoints, store: str) -> str:
    return open_store(store, endpoints).require_url()


@contextlib.contextmanager
def _clickhouse(endpoints: Endpoints) -> Iterator[Client]:
    from platformdb.clickhouse import connect

    with connect(_url(endpoints, "clickhouse")) as client:
        yield client


@contextlib.contextmanager
def _redis(endpoints: Endpoints) -> Iterator[SyncClient]:
    from platformdb.redis.client import connect

    client = connect(_url(endpoints, "redis"))
    try:
        yield client
    finally:
        client.close()


def _no_cluster(endpoints: Endpoints, what: str) -> None:
    if endpoints.clickhouse_cluster:
        raise ConfigError(f"tenant {what} does not support a ClickHouse cluster yet "
                          "(tenant delete does); see docs/TENANTS.md")


# ------------------------------------------------------------------ list / show


@dataclass
class Tenant:
    """One org's size in each store and its recent activity."""

    id: str
    slug: str | None
    name: str | None
    status: str | None
    postgresql: dict[str, dict[str, int]] = field(default_factory=dict)
    clickhouse: dict[str, dict[str, int]] = field(default_factory=dict)
    redis: dict[str, int] = field(default_factory=dict)
    latest_activity: datetime | None = None
    latest_metric_date: date | None = None

    def total(self, store: str, what: str = "rows") -> int:
        tables: dict[str, dict[str, int]] = getattr(self, store)
        return sum(entry[what] for entry in tables.values())

    @property
    def label(self) -> str:
        return self.slug or self.id

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "name": self.name, "status": self.status,
                "postgresql": self.postgresql, "clickhouse": self.clickhouse,
                "redis": self.redis, "latest_activity": self.latest_activity,
                "latest_metric_date": self.latest_metric_date,
                "totals": {"postgresql_rows": self.total("postgresql"),
                           "postgresql_bytes": self.total("postgresql", "bytes"),
                           "clickhouse_rows": self.total("clickhouse"),
                           "clickhouse_bytes": self.total("clickhouse", "bytes"),
                           "redis_keys": sum(self.redis.values())}}


def _tables(found: dict[str, tuple[int, int]]) -> dict[str, dict[str, int]]:
    return {name: {"rows": n, "bytes": b} for name, (n, b) in sorted(found.items())}


def list_tenants(endpoints: Endpoints, *, redis_prefix: str = "") -> list[Tenant]:
    """Every org (and every org id that still has rows or keys), with its sizes."""
    url = _url(endpoints, "postgresql")
    orgs = {org.id: org for org in pg.all_orgs(url)}
    pg_sizes, pg_seen = pg.sizes(url), pg.activity(url)
    ch_sizes: dict[uuid.UUID, dict[str, tuple[int, int]]] = {}
    ch_seen: dict[uuid.UUID, date] = {}
    if endpoints.clickhouse is not None:
        with _clickhouse(endpoints) as client:
            ch_sizes, ch_seen = ch.sizes(client), ch.activity(client)
    keys: dict[str, dict[str, int]] = {}
    if endpoints.redis is not None:
        with _redis(endpoints) as client:
            keys = rd.all_key_counts(client, prefix=redis_prefix)
    in_redis = {found for found in map(_uuid, keys) if found is not None}
    tenants = []
    for org_id in set(orgs) | set(ch_sizes) | in_redis:
        org = orgs.get(org_id, pg.Org(org_id, None, None, None))
        tenants.append(Tenant(str(org_id), org.slug, org.name, org.status,
                              _tables(pg_sizes.get(org_id, {})),
                              _tables(ch_sizes.get(org_id, {})),
                              dict(sorted(keys.get(str(org_id), {}).items())),
                              pg_seen.get(org_id), ch_seen.get(org_id)))
    return sorted(tenants, key=lambda t: (t.slug is None, t.slug or "", t.id))


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def resolve(endpoints: Endpoints, ref: str) -> pg.Org:
    """The org named by ``ref`` (id or slug); a deleted org is still found by its id."""
    org = pg.find_org(_url(endpoints, "postgresql"), ref)
    if org is None:
        raise ValidationError(f"unknown org {ref!r}: no organization has this slug (an id "
                              "finds an org even after its organizations row is gone)")
    return org


def show_tenant(endpoints: Endpoints, ref: str, *, redis_prefix: str = "") -> Tenant:
    """One org's sizes per store; an id with nothing left anywhere is an unknown org."""
    org = resolve(endpoints, ref)
    url = _url(endpoints, "postgresql")
    tenant = Tenant(str(org.id), org.slug, org.name, org.status,
                    _tables(pg.sizes(url, org.id).get(org.id, {})))
    tenant.latest_activity = pg.activity(url, org.id).get(org.id)
    if endpoints.clickhouse is not None:
        with _clickhouse(endpoints) as client:
            tenant.clickhouse = _tables(ch.sizes(client, org.id).get(org.id, {}))
            tenant.latest_metric_date = ch.activity(client, org.id).get(org.id)
    if endpoints.redis is not None:
        with _redis(endpoints) as client:
            tenant.redis = {k: v for k, v in rd.key_counts(client, str(org.id),
                                                           prefix=redis_prefix).items() if v}
    held = (tenant.total("postgresql") + tenant.total("clickhouse") + sum(tenant.redis.values()))
    if org.slug is None and not held:
        raise ValidationError(f"unknown org {ref!r}: no organization and no rows or keys "
                              "with this id in any store")
    return tenant


# ------------------------------------------------------------------ export


@dataclass
class Exported:
    path: Path
    org: dict[str, str]
    counts: dict[str, dict[str, int]]
    manifest: archive.Manifest


def schema_heads(endpoints: Endpoints) -> dict[str, int]:
    """The head of each store's migration ledger (0: never migrated)."""
    with _clickhouse(endpoints) as client, _redis(endpoints) as redis_client:
        return _heads(endpoints, client, redis_client)


def _heads(endpoints: Endpoints, client: Client, redis_client: SyncClient) -> dict[str, int]:
    return {"postgresql": pg.schema_head(_url(endpoints, "postgresql")),
            **_other_heads(client, redis_client)}


def _other_heads(client: Client, redis_client: SyncClient) -> dict[str, int]:
    """The ClickHouse and Redis ledger heads (PostgreSQL's is read where its rows are)."""
    from platformdb.stores.redis.driver import RedisDriver

    applied = RedisDriver(client=redis_client).applied()
    return {"clickhouse": ch.schema_head(client),
            "redis": max((m.version for m in applied), default=0)}


def export_tenant(endpoints: Endpoints, ref: str, out: Path, *,
                  redis_prefix: str = "") -> Exported:
    """Write one org's data in every store to the new archive ``out``."""
    _no_cluster(endpoints, "export")
    archive.refuse_existing(out)
    org = resolve(endpoints, ref)
    if org.slug is None:
        raise ValidationError(f"org {org.id} has no organizations row (deleted, or never "
                              "existed); nothing to export")
    folder = archive.scratch_dir(out, "platformdb-tenant-export")
    try:
        manifest = _export_into(endpoints, org, folder, redis_prefix)
        archive.write(folder, manifest, out)
    finally:
        archive.forget(folder)
        shutil.rmtree(folder, ignore_errors=True)
    counts = {store: manifest.rows(store) for store in archive.STORES}
    return Exported(out, manifest.org, counts, manifest)


def _export_into(endpoints: Endpoints, org: pg.Org, folder: Path,
                 redis_prefix: str) -> archive.Manifest:
    """Every store's files of ``org`` in ``folder``, and the manifest that lists them.

    PostgreSQL is read in a thread of its own while ClickHouse and Redis are read
    here: the stores work side by side.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="tenant-export") as pool:
        postgres = pool.submit(pg.export, _url(endpoints, "postgresql"), org.id,
                               folder / "postgresql")
        with _clickhouse(endpoints) as client, _redis(endpoints) as redis_client:
            ch_counts = ch.export(client, org.id, folder / "clickhouse")
            jobs = rd.export_jobs(redis_client, str(org.id), folder / "redis" / "jobs.jsonl",
                                  prefix=redis_prefix)
            schema = _other_heads(client, redis_client)
        pg_counts, schema["postgresql"] = postgres.result()
    manifest = archive.Manifest(
        org={"id": str(org.id), "slug": org.slug or "", "name": org.name or ""},
        schema=dict(sorted(schema.items())))
    for table, n in pg_counts.items():  # insertion order: parents first
        manifest.add(folder, f"postgresql/{table}.csv", n)
    manifest.stores["postgresql"] = {"format": "csv", "header": True,
                                     "tables": list(pg_counts),
                                     "snapshot": "repeatable read, read only"}
    for table, n in ch_counts.items():
        manifest.add(folder, f"clickhouse/{table}.native", n)
    manifest.stores["clickhouse"] = {"format": ch.FORMAT, "tables": list(ch_counts)}
    manifest.add(folder, "redis/jobs.jsonl", jobs)
    manifest.stores["redis"] = {"format": "jsonl", "kept": list(rd.KEPT),
                                "skipped": list(rd.SKIPPED)}
    return manifest


# ------------------------------------------------------------------ delete


@dataclass
class Deleted:
    org: dict[str, str]
    removed: dict[str, dict[str, int]]
    remaining: dict[str, dict[str, int]]

    @property
    def total(self) -> int:
        return sum(n for tables in self.removed.values() for n in tables.values())


def looks_like_development(endpoints: Endpoints) -> bool:
    """PostgreSQL on a loopback host in a database whose name says dev/test/demo..."""
    return development_url(_url(endpoints, "postgresql"))


def _guard(endpoints: Endpoints, force: bool, what: str) -> None:
    if force or looks_like_development(endpoints):
        return
    raise ValidationError(
        f"{mask_password(_url(endpoints, 'postgresql'))} does not look like a development "
        f"database (loopback host and a name with dev/test/demo...); pass --force to {what} "
        "anyway")


def remaining(endpoints: Endpoints, org: uuid.UUID, *,
              redis_prefix: str = "") -> dict[str, dict[str, int]]:
    """What ``org`` still holds in each store (rows per table, keys per structure)."""
    left = {"postgresql": pg.row_counts(_url(endpoints, "postgresql"), org)}
    with _clickhouse(endpoints) as client:
        left["clickhouse"] = ch.counts(client, org)
    with _redis(endpoints) as client:
        left["redis"] = rd.key_counts(client, str(org), prefix=redis_prefix)
    return left


def delete_tenant(endpoints: Endpoints, ref: str, *, yes: bool = False, force: bool = False,
                  keep_audit: bool = False, redis_prefix: str = "") -> Deleted:
    """Remove one org from every store, then check that nothing of it is left.

    PostgreSQL goes first, in one transaction; then ClickHouse; then Redis.
    Each step removes whatever is left of the org, so a delete interrupted
    after any step finishes when it is run again (by id: the slug goes with
    the organizations row).
    """
    org = resolve(endpoints, ref)
    if not yes:
        raise ValidationError(f"tenant delete removes org {org.slug or org.id} from every "
                              "store and cannot be undone; pass --yes to confirm")
    _guard(endpoints, force, "delete from it")
    from platformdb.stores.clickhouse.ddl import Topology

    removed = {"postgresql": pg.delete(_url(endpoints, "postgresql"), org.id,
                                       keep_audit=keep_audit)}
    with _clickhouse(endpoints) as client:
        topology = (Topology.on_cluster(endpoints.clickhouse_cluster, str(client.database))
                    if endpoints.clickhouse_cluster and not endpoints.clickhouse_managed
                    else None)
        removed["clickhouse"] = ch.delete(client, org.id, topology)
    with _redis(endpoints) as client:
        before = rd.key_counts(client, str(org.id), prefix=redis_prefix)
        rd.delete_org(client, str(org.id), prefix=redis_prefix)
        removed["redis"] = before
    left = remaining(endpoints, org.id, redis_prefix=redis_prefix)
    if keep_audit:
        left["postgresql"].pop(pg.AUDIT, None)
    report = Deleted(_org_dict(org), removed, left)
    leftover = [f"{store}.{name}={n}" for store, found in left.items()
                for name, n in found.items() if n]
    if leftover:
        raise CheckFailed(f"org {org.id} still has data after the delete ({', '.join(leftover)});"
                          " writes for it may still be arriving: stop them and run the delete "
                          "again")
    return report


def _org_dict(org: pg.Org) -> dict[str, str]:
    return {"id": str(org.id), "slug": org.slug or "", "name": org.name or ""}


# ------------------------------------------------------------------ import


@dataclass
class Imported:
    path: Path
    org: dict[str, str]
    counts: dict[str, dict[str, int]]
    replaced: bool


def _held(endpoints: Endpoints, org: uuid.UUID, redis_prefix: str) -> list[str]:
    return [f"{store} {name} {n}" for store, found in
            remaining(endpoints, org, redis_prefix=redis_prefix).items()
            for name, n in found.items() if n]


def _check_versions(path: Path, manifest: archive.Manifest, heads: dict[str, int]) -> None:
    for store, version in sorted(manifest.schema.items()):
        if version > heads.get(store, 0):
            raise ValidationError(
                f"{path} was exported at {store} schema version {version}, newer than this "
                f"deployment's {heads.get(store, 0)}; run `platformdb migrate up` (or upgrade "
                "platformdb) before importing it")


def import_tenant(endpoints: Endpoints, path: Path, *, replace: bool = False,
                  force: bool = False, redis_prefix: str = "") -> Imported:
    """Restore an exported org, all or nothing.

    Every file is checked against the manifest, and the archive's format and
    schema versions against this deployment, before anything is written. An
    org that exists is refused unless ``replace``; then its current data is
    exported to a scratch archive first and put back if the import fails.
    """
    _no_cluster(endpoints, "import")
    with archive.opened(path) as (folder, manifest):
        _check_versions(path, manifest, schema_heads(endpoints))
        org_id = uuid.UUID(manifest.org["id"])
        slug = manifest.org.get("slug") or ""
        url = _url(endpoints, "postgresql")
        if slug:
            other = pg.find_org(url, slug)
            if other is not None and other.id != org_id:
                raise ValidationError(f"another org ({other.id}) already has the slug {slug!r}"
                                      " here; nothing was imported")
        held = _held(endpoints, org_id, redis_prefix)
        if held and not replace:
            raise ValidationError(f"org {slug or org_id} already exists here ({held[0]}...); "
                                  "pass --replace to replace it")
        if held:
            _guard(endpoints, force, "replace an org in it")
        with contextlib.ExitStack() as stack:
            saved = None
            if held:
                saved = stack.enter_context(_saved(endpoints, org_id, path, redis_prefix))
            counts = _load(endpoints, folder, manifest, org_id, saved, redis_prefix)
    return Imported(path, manifest.org, counts, bool(held))


@contextlib.contextmanager
def _saved(endpoints: Endpoints, org: uuid.UUID, near: Path,
           redis_prefix: str) -> Iterator[Path]:
    """The org's current ClickHouse and Redis data, unpacked, to put back on failure."""
    scratch = archive.scratch_dir(near, "platformdb-tenant-replaced")
    try:
        manifest = _export_into(endpoints, pg.Org(org, None, None, None), scratch, redis_prefix)
        (scratch / archive.MANIFEST).write_text(manifest.to_json())
        yield scratch
    finally:
        archive.forget(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _load(endpoints: Endpoints, folder: Path, manifest: archive.Manifest, org: uuid.UUID,
          saved: Path | None, redis_prefix: str) -> dict[str, dict[str, int]]:
    expected = {store: manifest.rows(store) for store in archive.STORES}
    jobs = rd.read_jobs(folder / "redis" / "jobs.jsonl")
    if len(jobs) != expected["redis"].get("jobs", 0):
        raise ValidationError("redis/jobs.jsonl does not hold the jobs its manifest counts")
    order = list(manifest.stores.get("postgresql", {}).get("tables", expected["postgresql"]))
    url = _url(endpoints, "postgresql")
    with _clickhouse(endpoints) as client, _redis(endpoints) as redis_client:
        staged = ch.stage(client, folder / "clickhouse", expected["clickhouse"])
        clickhouse_touched = redis_touched = False
        try:
            with pg.loading(url, org, folder / "postgresql", order,
                            replace=saved is not None) as loaded:
                _compare("postgresql", loaded, expected["postgresql"])
                clickhouse_touched = True
                if saved is not None:
                    ch.delete(client, org)
                staged.attach()
                _compare("clickhouse", ch.counts(client, org), expected["clickhouse"])
                redis_touched = True
                if saved is not None:
                    rd.purge_jobs(redis_client, str(org),
                                  rd.job_queues(redis_client, str(org), prefix=redis_prefix),
                                  prefix=redis_prefix)
                written = rd.import_jobs(redis_client, jobs, prefix=redis_prefix)
                _compare("redis", {"jobs": written}, expected["redis"])
                # leaving the block commits PostgreSQL: the last step
        except BaseException:
            _undo(client, redis_client, org, saved, jobs, redis_prefix,
                  clickhouse_touched, redis_touched)
            raise
        finally:
            staged.discard()
        if saved is not None:  # the replaced org's sessions and cache belong to its old data
            rd.delete_disposable(redis_client, str(org), prefix=redis_prefix)
    return {"postgresql": loaded, "clickhouse": staged.loaded, "redis": {"jobs": written}}


def _compare(store: str, found: dict[str, int], expected: dict[str, int]) -> None:
    for name, count in sorted(expected.items()):
        if found.get(name, 0) != count:
            raise CheckFailed(f"{store} {name}: {found.get(name, 0)} rows after loading, the "
                              f"archive's manifest says {count}; nothing was imported")


def _undo(client: Client, redis_client: SyncClient, org: uuid.UUID, saved: Path | None,
          jobs: list[dict[str, Any]], redis_prefix: str, clickhouse_touched: bool,
          redis_touched: bool) -> None:
    """Take out what an import put into ClickHouse and Redis; put a replaced org back."""
    if clickhouse_touched:
        ch.delete(client, org)
        if saved is not None:
            old = ch.stage(client, saved / "clickhouse",
                           {p.stem: _rows(p) for p in (saved / "clickhouse").glob("*.native")})
            try:
                old.attach()
            finally:
                old.discard()
    if redis_touched:
        rd.purge_jobs(redis_client, str(org), [str(j["queue"]) for j in jobs],
                      prefix=redis_prefix)
        if saved is not None:
            rd.import_jobs(redis_client, rd.read_jobs(saved / "redis" / "jobs.jsonl"),
                           prefix=redis_prefix)


def _rows(path: Path) -> int:
    """A saved ClickHouse file's row count, from the manifest beside it."""
    manifest = json.loads((path.parent.parent / archive.MANIFEST).read_text())
    return int(manifest["files"][f"clickhouse/{path.name}"]["rows"])


# ------------------------------------------------------------------ checksums


def checksums(endpoints: Endpoints, ref: str, *,
              redis_prefix: str = "") -> dict[str, dict[str, str]]:
    """A digest of one org's data per table (PostgreSQL, ClickHouse) and structure (Redis)."""
    org = resolve(endpoints, ref).id
    digests = {"postgresql": pg.checksums(_url(endpoints, "postgresql"), org)}
    with _clickhouse(endpoints) as client:
        digests["clickhouse"] = ch.checksums(client, org)
    with _redis(endpoints) as client:
        digests["redis"] = rd.checksums(client, str(org), prefix=redis_prefix)
    return digests


from platformdb.ops.tenant_usage import usage_metrics  # noqa: E402

"""The tenant lifecycle across every store: list, show, export, delete, import.

The org is the platform's unit: its ``organizations.id`` is the ``org_id`` of
every PostgreSQL row, every ClickHouse row and (inside the hash tag) every Redis
key it owns. These functions act on one org in every store at once, through each
store's tenant facet (:meth:`platformdb.stores.base.Store.tenant`: sizes, counts,
export, delete, staged import); they take a :class:`~platformdb.ops.context.Context`
(or the :class:`~platformdb.types.Endpoints` it holds; nothing here starts a
server) and the deployment's Redis key prefix (``""`` by default).

- :func:`list_tenants` / :func:`show_tenant`: sizes per store and recent activity.
- :func:`export_tenant`: one archive (:mod:`platformdb.tenant.archive`): PostgreSQL
  rows from one snapshot (CSV), ClickHouse rows (Native), queued jobs (JSON lines),
  a manifest.
- :func:`delete_tenant`: PostgreSQL in one transaction, then ClickHouse, then Redis;
  each step finds what is left, so an interrupted delete finishes when re-run.
- :func:`import_tenant`: only a signed archive whose signer this deployment trusts,
  every row, key and job of the archive's org, all or nothing; PostgreSQL stays
  uncommitted until ClickHouse and Redis are in, and a failure undoes what was done.
- :func:`signing_keys` / :func:`rotate_signing_key`: the deployment's archive signing
  keys (:mod:`platformdb.tenant.keys`).
- per-tenant sizes for ``stats`` and the exporter: :mod:`platformdb.ops.tenant_usage`.

docs/TENANTS.md describes the commands, the archive and every decision.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from platformdb.backup.sets import journal_record, switch_in
from platformdb.config import DEV_WORDS, development_url, load_settings
from platformdb.errors import CheckFailed, Hint, ValidationError, when_interrupted
from platformdb.journal import UNDOING, Journal, crash_point, unfinished
from platformdb.journal import running as running_journals
from platformdb.ops.context import Context, context
from platformdb.progress import Task, folder_bytes
from platformdb.redaction import redact
from platformdb.stores.base import Org, Size, Store, TenantData, TenantImport
from platformdb.tenant import archive, keys
from platformdb.types import Endpoints

__all__ = ["DEV_WORDS", "Deleted", "Exported", "Imported", "SigningKeys", "Tenant",
           "checksums", "delete_tenant", "export_tenant", "import_limits", "import_tenant",
           "keyring", "list_tenants", "looks_like_development", "recover_journal",
           "remaining", "resolve", "rotate_signing_key", "schema_heads", "scratch_copies",
           "show_tenant", "signing_keys", "trusted_keys"]

DIRECTORY = "postgresql"
"""The store whose ``organizations`` table is the org directory (and whose URL the
development guard reads)."""


def _available(ctx: Context) -> list[Store]:
    """The stores this command can reach (list and show skip the others)."""
    return [store for store in ctx.stores() if store.url is not None]


@contextlib.contextmanager
def _facets(stores: list[Store], prefix: str) -> Iterator[list[tuple[Store, TenantData]]]:
    with contextlib.ExitStack() as stack:
        yield [(store, stack.enter_context(store.tenant(prefix=prefix))) for store in stores]


# ------------------------------------------------------------------ list / show


@dataclass
class Tenant:
    """One org's size in each store and its recent activity."""

    id: str
    slug: str | None
    name: str | None
    status: str | None
    sizes: dict[str, dict[str, Size]] = field(default_factory=dict)
    """store -> table or key family -> what the org holds there."""
    units: dict[str, str] = field(default_factory=dict)
    """store -> what its sizes count: ``rows`` (with bytes) or ``keys``."""
    activity: dict[str, datetime | date] = field(default_factory=dict)
    """label (``latest_activity``, ``latest_metric_date``) -> the latest one a store knows."""
    copies: dict[str, int] = field(default_factory=dict)
    """Scratch copies holding the org's data (``show`` only): ``store:place`` -> rows or
    keys, ``folder:<path>`` -> 1 (:func:`scratch_copies`)."""

    def total(self, store: str, what: str = "rows") -> int:
        found = self.sizes.get(store, {})
        return sum((size.bytes or 0) if what == "bytes" else size.count
                   for size in found.values())

    @property
    def label(self) -> str:
        return self.slug or self.id

    @property
    def latest_activity(self) -> datetime | date | None:
        return self.activity.get("latest_activity")

    @property
    def latest_metric_date(self) -> datetime | date | None:
        return self.activity.get("latest_metric_date")

    def table(self, store: str) -> dict[str, Any]:
        """``store``'s sizes as reports show them: ``{table: {"rows", "bytes"}}``, or
        ``{family: keys}`` for a store that counts keys."""
        found = self.sizes.get(store, {})
        if self.units.get(store) == "keys":
            return {name: size.count for name, size in found.items()}
        return {name: {"rows": size.count, "bytes": size.bytes or 0}
                for name, size in found.items()}

    def totals(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for store, unit in self.units.items():
            if unit == "keys":
                found[f"{store}_keys"] = self.total(store)
            else:
                found[f"{store}_rows"] = self.total(store)
                found[f"{store}_bytes"] = self.total(store, "bytes")
        return found

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "name": self.name, "status": self.status,
                **{store: self.table(store) for store in self.units},
                "latest_activity": self.latest_activity,
                "latest_metric_date": self.latest_metric_date, "totals": self.totals(),
                **({"scratch_copies": self.copies} if self.copies else {})}

    def held(self) -> int:
        return sum(self.total(store) for store in self.sizes)


def _tenant(org: Org, facets: list[tuple[Store, TenantData]],
            sizes: dict[str, dict[uuid.UUID, dict[str, Size]]],
            seen: dict[str, dict[uuid.UUID, datetime | date]]) -> Tenant:
    found = Tenant(str(org.id), org.slug, org.name, org.status,
                   units={store.name: facet.unit for store, facet in facets})
    for store, facet in facets:
        found.sizes[store.name] = dict(sorted(sizes[store.name].get(org.id, {}).items()))
        when = seen[store.name].get(org.id)
        if facet.activity_label and when is not None:
            found.activity[facet.activity_label] = when
    return found


def list_tenants(target: Context | Endpoints, *, redis_prefix: str = "") -> list[Tenant]:
    """Every org (and every org id that still has rows or keys), with its sizes."""
    ctx = context(target)
    ctx.url(DIRECTORY)
    with _facets(_available(ctx), redis_prefix) as facets:
        orgs = {org.id: org for _, facet in facets for org in facet.orgs()}
        sizes = {store.name: facet.sizes() for store, facet in facets}
        seen = {store.name: facet.activity() for store, facet in facets}
        ids = set(orgs).union(*(set(found) for found in sizes.values()))
        tenants = [_tenant(orgs.get(org_id, Org(org_id, None, None, None)), facets, sizes,
                           seen) for org_id in ids]
    return sorted(tenants, key=lambda t: (t.slug is None, t.slug or "", t.id))


def slugs(target: Context | Endpoints, prefix: str = "") -> list[str]:
    """The orgs' slugs that start with ``prefix`` (shell completion)."""
    ctx = context(target)
    with ctx.store(DIRECTORY).tenant() as directory:
        return sorted(org.slug for org in directory.orgs()
                      if org.slug and org.slug.startswith(prefix))


def resolve(target: Context | Endpoints, ref: str) -> Org:
    """The org named by ``ref`` (id or slug); a deleted org is still found by its id."""
    ctx = context(target)
    with ctx.store(DIRECTORY).tenant() as directory:
        org = directory.find_org(ref)
    if org is None:
        raise ValidationError(f"unknown org {ref!r}: no organization has this slug (an id "
                              "finds an org even after its organizations row is gone)")
    return org


def show_tenant(target: Context | Endpoints, ref: str, *, redis_prefix: str = "") -> Tenant:
    """One org's sizes per store; an id with nothing left anywhere is an unknown org."""
    ctx = context(target)
    org = resolve(ctx, ref)
    with _facets(_available(ctx), redis_prefix) as facets:
        sizes = {store.name: facet.sizes(org.id) for store, facet in facets}
        seen = {store.name: facet.activity(org.id) for store, facet in facets}
        tenant = _tenant(org, facets, sizes, seen)
    tenant.copies = scratch_copies(ctx, org.id, redis_prefix=redis_prefix)
    if org.slug is None and not tenant.held() and not tenant.copies:
        raise ValidationError(f"unknown org {ref!r}: no organization and no rows or keys "
                              "with this id in any store")
    return tenant


# ------------------------------------------------------------------ signing keys


def keyring(target: Context | Endpoints | Path) -> keys.KeyRing:
    """The deployment's archive signing keys: ``<home>/tenant-keys``, where home is
    ``target`` when a path, else the endpoints' (``$PLATFORMDB_HOME`` when they have
    none)."""
    home = target if isinstance(target, Path) else context(target).endpoints.home
    return keys.KeyRing.of_home(home if home is not None else load_settings().home)


def trusted_keys(values: list[str]) -> list[keys.PublicKey]:
    """``--trust-key`` values (64 hex digits, or files holding a key) as public keys."""
    return [keys.trusted_key(value) for value in values]


def import_limits(max_size: str | int = archive.Limits.max_size,
                  max_member_size: str | int = archive.Limits.max_member_size,
                  max_members: int = archive.Limits.max_members) -> archive.Limits:
    """The bounds of an import; sizes as bytes or text (``16G``, ``500M``)."""
    def size(value: str | int) -> int:
        return value if isinstance(value, int) else archive.parse_size(value)
    return archive.Limits(size(max_size), size(max_member_size), max_members)


@dataclass
class SigningKeys:
    """The key exports are signed with (``current``) and every key this deployment signed
    with before (``retired``), whose archives still import here."""

    folder: Path
    current: keys.PublicKey
    retired: list[keys.PublicKey]
    rotated_from: keys.PublicKey | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder),
                "current": {"id": self.current.id, "public_key": self.current.hex},
                "retired": [{"id": k.id, "public_key": k.hex} for k in self.retired],
                **({"rotated_from": self.rotated_from.id} if self.rotated_from else {})}


def signing_keys(target: Context | Endpoints | Path) -> SigningKeys:
    """The current signing key (created on first use) and the retired ones."""
    ring = keyring(target)
    current = ring.current()[1]
    return SigningKeys(ring.folder, current, [k for k in ring.known() if k != current])


def rotate_signing_key(target: Context | Endpoints | Path) -> SigningKeys:
    """A new signing key for the next exports; the old one keeps verifying imports."""
    ring = keyring(target)
    current, old = ring.rotate()
    return SigningKeys(ring.folder, current, [k for k in ring.known() if k != current], old)


# ------------------------------------------------------------------ export


@dataclass
class Exported:
    path: Path
    org: dict[str, str]
    counts: dict[str, dict[str, int]]
    manifest: archive.Manifest
    signed_by: str = ""
    """The id of the key that signed it."""


def schema_heads(target: Context | Endpoints) -> dict[str, int]:
    """The head of each store's migration ledger (0: never migrated)."""
    with _facets(context(target).stores(), "") as facets:
        return {store.name: facet.schema_head() for store, facet in facets}


def export_tenant(target: Context | Endpoints, ref: str, out: Path, *,
                  redis_prefix: str = "") -> Exported:
    """Write one org's data in every store to the new archive ``out``."""
    ctx = context(target)
    archive.refuse_existing(out)
    if not out.parent.is_dir():
        raise ValidationError(f"{out.parent} is not a folder; create it or choose another "
                              "--out (nothing was exported)")
    org = resolve(ctx, ref)
    if org.slug is None:
        raise ValidationError(f"org {org.id} has no organizations row (deleted, or never "
                              "existed); nothing to export")
    ring = keyring(ctx)
    signer = ring.current()[1]  # created on first use, before any work
    folder = archive.scratch_dir(out, "platformdb-tenant-export")
    log = Journal.begin(_home(ctx), EXPORT, org=str(org.id), scratch_folders=[str(folder)],
                        partial=str(out.with_name(f".{out.name}.partial")))
    try:
        with when_interrupted(f"no archive was written at {out} (the scratch copy was "
                              "removed)"):
            manifest = _export_into(ctx, org, folder, redis_prefix)
            with ctx.progress.task(f"tenant export: writing {out.name}", unit="bytes",
                                   total=sum(int(entry["bytes"])
                                             for entry in manifest.files.values())) as task:
                task.measure(folder_bytes(out.parent, only=f".{out.name}.partial"))
                archive.write(folder, manifest, out, ring)
            crash_point("tenant-export:written")
    finally:
        archive.forget(folder)
        shutil.rmtree(folder, ignore_errors=True)
        log.finish()
    counts = {store: manifest.rows(store) for store in manifest.stores}
    return Exported(out, manifest.org, counts, manifest, signer.id)


def _export_into(ctx: Context, org: Org, folder: Path, redis_prefix: str) -> archive.Manifest:
    """Every store's files of ``org`` in ``folder/<store>/``, and the manifest that lists
    them. The stores are read side by side, each in a thread with its own connection."""
    stores = ctx.stores()

    def one(store: Store) -> Any:
        with ctx.progress.task(f"tenant export: reading {store.name}"), \
                store.tenant(prefix=redis_prefix) as facet:
            return facet.export(org.id, folder / store.name)

    with ctx.progress.task(f"tenant export {org.slug or org.id}", total=len(stores),
                           unit="steps") as overall, \
            ThreadPoolExecutor(len(stores), thread_name_prefix="tenant-export") as pool:
        futures = [(store, pool.submit(one, store)) for store in stores]
        parts = []
        for store, future in futures:
            parts.append((store, future.result()))
            overall.advance()
    crash_point("tenant-export:read")
    manifest = archive.Manifest(
        org={"id": str(org.id), "slug": org.slug or "", "name": org.name or ""},
        schema=dict(sorted((store.name, part.head) for store, part in parts)))
    for store, part in parts:
        for name, n in part.files.items():  # in the store's order: parents first
            manifest.add(folder, f"{store.name}/{name}", n)
        manifest.stores[store.name] = part.info
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


def looks_like_development(target: Context | Endpoints) -> bool:
    """PostgreSQL on a loopback host in a database whose name says dev/test/demo..."""
    return development_url(context(target).url(DIRECTORY))


def _guard(ctx: Context, force: bool, what: str) -> None:
    if force or looks_like_development(ctx):
        return
    raise ValidationError(
        f"{redact(ctx.url(DIRECTORY))} does not look like a development database"
        " (loopback host and a name with dev/test/demo...)",
        hint=Hint(flag="--force", does=f"to {what} anyway"))


def remaining(target: Context | Endpoints, org: uuid.UUID, *, redis_prefix: str = "",
              keep_audit: bool = False) -> dict[str, dict[str, int]]:
    """What ``org`` still holds in each store (rows per table, keys per structure)."""
    with _facets(context(target).stores(), redis_prefix) as facets:
        return {store.name: facet.counts(org, keep_audit=keep_audit) for store, facet in facets}


def delete_tenant(target: Context | Endpoints, ref: str, *, yes: bool = False,
                  force: bool = False, keep_audit: bool = False,
                  redis_prefix: str = "") -> Deleted:
    """Remove one org from every store and from every scratch copy, then check that
    nothing of it is left.

    A journal (:mod:`platformdb.journal`, operation ``tenant delete``) names the org
    before anything changes. The stores go in registry order (PostgreSQL first, in one
    transaction; then ClickHouse; then Redis), then the scratch copies
    (:func:`scratch_copies`). Each step removes whatever is left of the org, so a delete
    killed after any step is finished by ``platformdb recover`` or by running it again
    (by id or by slug: the slug is found in the killed delete's journal).
    """
    ctx = context(target)
    home = _home(ctx)
    pending = _pending(home, DELETE, ref)
    try:  # the live directory first: a slug may be reused after a killed delete
        org = resolve(ctx, ref)
    except ValidationError:
        if pending is None:
            raise
        org = Org(uuid.UUID(pending.data["intent"]["org"]), pending.data["intent"].get("slug"),
                  None, None)
    if pending is not None and pending.data["intent"].get("org") != str(org.id):
        pending = None  # another org's killed delete: `platformdb recover` finishes it
    if not yes:
        raise ValidationError(f"tenant delete removes org {org.slug or org.id} from every "
                              "store and cannot be undone",
                              hint=Hint(flag="--yes", does="to confirm"))
    _guard(ctx, force, "delete from it")
    removed: dict[str, dict[str, int]] = {}
    stores = ctx.stores()

    def stopped() -> str:
        done = ", ".join(removed) or "no store"
        return (f"the delete of org {org.id} stopped part-way ({done} done): run it again "
                "(or `platformdb recover`) to finish")

    log = Journal.begin(home, DELETE, org=str(org.id), slug=org.slug or "",
                        keep_audit=keep_audit, redis_prefix=redis_prefix)
    crash_point("tenant-delete:begun")
    with when_interrupted(stopped), \
            ctx.progress.task(f"tenant delete {org.slug or org.id}", total=len(stores),
                              unit="steps") as overall:
        try:
            removed.update(_delete_everywhere(ctx, org.id, redis_prefix, keep_audit, log))
        except BaseException:
            log.data["pid"] = 0  # stopped: no longer running, for a re-run or `recover`
            log.write()
            raise
        overall.advance(len(stores))
    left = remaining(ctx, org.id, redis_prefix=redis_prefix, keep_audit=keep_audit)
    copies = scratch_copies(ctx, org.id, redis_prefix=redis_prefix, skip=log.id)
    log.finish()
    if pending is not None:
        pending.finish()
    report = Deleted(_org_dict(org), removed, left)
    leftover = [f"{store}.{name}={n}" for store, found in left.items()
                for name, n in found.items() if n] + [f"{place}={n}"
                                                     for place, n in copies.items()]
    if leftover:
        raise CheckFailed(f"org {org.id} still has data after the delete ({', '.join(leftover)});"
                          " writes for it may still be arriving (or an operation holding a "
                          "scratch copy is running): stop them and run the delete again")
    return report


def _delete_everywhere(ctx: Context, org: uuid.UUID, redis_prefix: str, keep_audit: bool,
                       log: Journal) -> dict[str, dict[str, int]]:
    """Every store's part of a delete, each step written to ``log`` first, then the
    scratch copies; what each removed (``scratch``: per copy)."""
    removed: dict[str, dict[str, int]] = {}
    for store in ctx.stores():
        log.part(store.name, phase="deleting")
        crash_point(f"tenant-delete:deleting:{store.name}")
        with ctx.progress.task(f"tenant delete: {store.name}"), \
                store.tenant(prefix=redis_prefix) as facet:
            removed[store.name] = facet.delete(org, keep_audit=keep_audit)
        log.part(store.name, phase="deleted")
        crash_point(f"tenant-delete:deleted:{store.name}")
    log.part("scratch", phase="erasing")
    crash_point("tenant-delete:erasing")
    erased = _erase_scratch(ctx, org, redis_prefix, skip=log.id)
    if erased:
        removed["scratch"] = erased
    log.part("scratch", phase="erased")
    crash_point("tenant-delete:erased")
    return removed


def _org_dict(org: Org) -> dict[str, str]:
    return {"id": str(org.id), "slug": org.slug or "", "name": org.name or ""}


# ------------------------------------------------------------------ journals, scratch copies

EXPORT, DELETE, IMPORT = "tenant export", "tenant delete", "tenant import"
"""The journaled tenant operations (:mod:`platformdb.journal`'s ``operation``)."""

SCRATCH_FOLDERS = ".platformdb-tenant-"
"""The scratch folders of tenant operations start so: ``-export-`` (an export's files
before they are packed), ``-`` (an unpacked import), ``-replaced-`` (a replaced org's
data kept for an undo); beside the archive, or in the temp folder."""


def _home(ctx: Context) -> Path:
    home = ctx.endpoints.home
    return home if home is not None else load_settings().home


def _pending(home: Path, operation: str, ref: str) -> Journal | None:
    """A killed ``operation``'s journal for org ``ref`` (its id or slug)."""
    for log in unfinished(home):
        intent = log.data.get("intent", {})
        if log.data.get("operation") == operation and ref in (intent.get("org"),
                                                              intent.get("slug")):
            return log
    return None


def _busy_folders(home: Path, skip: str) -> set[str]:
    return {str(folder) for log in running_journals(home) if log.id != skip
            for folder in log.data.get("intent", {}).get("scratch_folders", [])}


def _scratch_folders(home: Path, skip: str = "") -> list[Path]:
    """Tenant scratch folders no running operation holds: under ``home`` (and its
    folders, one level down) and wherever a killed operation's journal names one."""
    busy = _busy_folders(home, skip)
    found: set[Path] = set()
    for place in [home, *(p for p in home.iterdir() if p.is_dir())] if home.is_dir() else []:
        found.update(p for p in place.glob(f"{SCRATCH_FOLDERS}*") if p.is_dir())
    for log in unfinished(home):
        found.update(Path(f) for f in log.data.get("intent", {}).get("scratch_folders", [])
                     if Path(f).is_dir())
    return sorted(p for p in found if str(p) not in busy)


def _holds(folder: Path, org: uuid.UUID) -> bool:
    """Whether a scratch folder holds ``org``'s data: its id as text (CSV, JSON lines,
    manifest) or as ClickHouse stores a UUID (two little-endian halves, Native files)."""
    needles = [str(org).encode(), org.bytes[:8][::-1] + org.bytes[8:][::-1]]
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        tail = b""
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if any(needle in tail + chunk for needle in needles):
                    return True
                tail = chunk[-32:]
    return False


def scratch_copies(target: Context | Endpoints, org: uuid.UUID, *, redis_prefix: str = "",
                   skip: str = "") -> dict[str, int]:
    """Every copy of ``org``'s data the platform's own scratch places hold: ClickHouse
    scratch databases (tenant import staging, export snapshots, restore copies), Redis
    restore staging keys (``store:place`` -> rows or keys), and tenant scratch folders
    (``folder:<path>`` -> 1). Copies of a running operation (other than journal
    ``skip``) are left out: they are that operation's to remove."""
    ctx = context(target)
    home = _home(ctx)
    found: dict[str, int] = {}
    if not any(log.id != skip for log in running_journals(home)):
        # (a running restore or import owns its scratch databases and keys)
        with _facets(_available(ctx), redis_prefix) as facets:
            for store, facet in facets:
                for place, n in facet.scratch_copies(org).items():
                    found[f"{store.name}:{place}"] = n
    for folder in _scratch_folders(home, skip):
        if _holds(folder, org):
            found[f"folder:{folder}"] = 1
    return found


def _erase_scratch(ctx: Context, org: uuid.UUID, redis_prefix: str, *,
                   skip: str) -> dict[str, int]:
    """Remove ``org`` from every scratch copy (:func:`scratch_copies`): its rows and keys
    from scratch databases and staging keys (other orgs' stay), and every scratch folder
    holding it as a whole (a tenant scratch folder holds one org)."""
    home = _home(ctx)
    erased: dict[str, int] = {}
    if not any(log.id != skip for log in running_journals(home)):
        with _facets(_available(ctx), redis_prefix) as facets:
            for store, facet in facets:
                for place, n in facet.erase_scratch(org).items():
                    erased[f"{store.name}:{place}"] = n
    for folder in _scratch_folders(home, skip):
        if _holds(folder, org):
            shutil.rmtree(folder, ignore_errors=True)
            erased[f"folder:{folder}"] = 1
    return erased


def recover_journal(target: Context | Endpoints, log: Journal) -> dict[str, Any]:
    """Finish or undo the tenant operation a crash interrupted (``platformdb recover``).

    - ``tenant delete``: finished (the org is removed from every store and scratch copy).
    - ``tenant import``: finished when PostgreSQL had committed the org (the last
      switch; only staging is dropped), else undone: what the other stores had switched
      in is taken out again (a replaced org's saved data is put back) and staging dropped.
    - ``tenant export``: its scratch folder and partial archive are removed.
    """
    ctx = context(target)
    operation = str(log.data.get("operation"))
    intent: dict[str, Any] = dict(log.data.get("intent", {}))
    prefix = str(intent.get("redis_prefix", ""))
    outcome: dict[str, Any] = {"operation": operation, "id": log.id, "phase": log.phase,
                               "stores": {}}
    if operation == DELETE:
        org = uuid.UUID(intent["org"])
        removed = _delete_everywhere(ctx, org, prefix, bool(intent.get("keep_audit")), log)
        outcome["action"] = "finished"
        outcome["stores"] = {name: f"removed {sum(found.values())}"
                             for name, found in removed.items()}
    elif operation == IMPORT:
        outcome.update(_recover_import(ctx, log, intent, prefix))
    else:
        outcome["action"] = "rolled back"
        with contextlib.suppress(OSError):
            Path(str(intent.get("partial", ""))).unlink(missing_ok=True)
    for folder in intent.get("scratch_folders", []):
        shutil.rmtree(folder, ignore_errors=True)
    log.finish()
    return outcome


def _recover_import(ctx: Context, log: Journal, intent: dict[str, Any],
                    prefix: str) -> dict[str, Any]:
    parts = log.parts
    staging = {name: [str(part["scratch"])] if part.get("scratch") else None
               for name, part in parts.items() if name in {s.name for s in ctx.stores()}}
    if not intent.get("scratch_folders") and intent.get("near"):  # killed unpacking
        busy = _busy_folders(_home(ctx), log.id)
        for folder in Path(str(intent["near"])).glob(f"{SCRATCH_FOLDERS}*"):
            if folder.is_dir() and "-export-" not in folder.name and str(folder) not in busy:
                shutil.rmtree(folder, ignore_errors=True)
    if intent.get("org") is None:  # killed before the archive was read: nothing changed
        return {"action": "rolled back"}
    org = uuid.UUID(str(intent["org"]))
    committed = parts.get(DIRECTORY, {}).get("phase") in ("switched", "committed")
    if not committed and not intent.get("replace"):
        # the commit may have landed before its record: the org's row says
        with ctx.store(DIRECTORY).tenant() as directory:
            found = directory.find_org(str(org))
        committed = found is not None and found.slug is not None
    stores: dict[str, str] = {}
    if not committed:
        saved = Path(str(intent["saved"])) if intent.get("saved") else None
        for store in ctx.stores():
            if store.name == DIRECTORY or parts.get(store.name, {}).get("phase") not in (
                    "switching", "switched", "undoing"):
                continue  # PostgreSQL's transaction died with the process
            with store.tenant(prefix=prefix) as facet:
                facet.delete(org)
                if saved is not None and (saved / store.name).is_dir():
                    _put_back(ctx, facet, org, saved, store.name)
            stores[store.name] = "taken out" + (" (replaced data put back)" if saved else "")
    for store in ctx.stores():
        names = staging.get(store.name)
        with store.tenant(prefix=prefix) as facet:
            dropped = facet.drop_staging(names if names or store.name not in parts else None)
        if dropped:
            stores[store.name] = (stores.get(store.name, "") + f" dropped {len(dropped)} "
                                  "staging").strip()
    if intent.get("saved"):
        shutil.rmtree(str(intent["saved"]), ignore_errors=True)
    return {"action": "finished" if committed else "rolled back", "stores": stores}


def _put_back(ctx: Context, facet: TenantData, org: uuid.UUID, saved: Path,
              store: str) -> None:
    """Load a replaced org's saved part of ``store`` again (the undo of a killed replace)."""
    manifest = archive._manifest(saved, (saved / archive.MANIFEST).read_bytes())
    stage = facet.stage_import(org, saved / store, manifest.rows(store),
                               info=manifest.stores.get(store, {}), saved=None)
    try:
        stage.switch()
    except BaseException:
        stage.discard()
        raise
    stage.commit()


# ------------------------------------------------------------------ import


@dataclass
class Imported:
    path: Path
    org: dict[str, str]
    counts: dict[str, dict[str, int]]
    replaced: bool
    signed_by: str = ""
    """The id of the trusted key whose signature the archive carried."""


def _held(ctx: Context, org: uuid.UUID, redis_prefix: str) -> list[str]:
    return [f"{store} {name} {n}" for store, found in
            remaining(ctx, org, redis_prefix=redis_prefix).items()
            for name, n in found.items() if n]


def _check_versions(path: Path, manifest: archive.Manifest, heads: dict[str, int]) -> None:
    for store, version in sorted(manifest.schema.items()):
        if version > heads.get(store, 0):
            raise ValidationError(
                f"{path} was exported at {store} schema version {version}, newer than this "
                f"deployment's {heads.get(store, 0)}; migrate this deployment (or upgrade "
                "platformdb) before importing it", hint=Hint(command="platformdb migrate up"))


def import_tenant(target: Context | Endpoints, path: Path, *, replace: bool = False,
                  force: bool = False, redis_prefix: str = "",
                  trust: list[keys.PublicKey] | None = None,
                  limits: archive.Limits | None = None) -> Imported:
    """Restore an exported org, all or nothing.

    The manifest's signature is verified first, against this deployment's keys (current
    and rotated) and ``trust`` (another deployment's public keys); then the archive is
    unpacked within ``limits`` and every file checked against the manifest, and the
    archive's format and schema versions against this deployment, before anything is
    written. Every PostgreSQL row, ClickHouse row and Redis job must be the manifest's
    org's: the first one that is not refuses the whole archive. An
    org that exists is refused unless ``replace``; then its current data is
    exported to a scratch archive first and put back if the import fails.
    Every store stages its part beside the live data, then each is switched in
    (PostgreSQL's commit last), as a restore is (:func:`platformdb.backup.sets.stage_and_switch`).
    """
    ctx = context(target)
    home = _home(ctx)
    finished: set[str] = set()  # orgs a killed import of this archive had committed
    for pending in unfinished(home):  # a killed import is finished or undone first
        if pending.data.get("operation") == IMPORT:
            intent = pending.data.get("intent", {})
            if recover_journal(ctx, pending).get("action") == "finished" and \
                    intent.get("archive") == str(path):
                finished.add(str(intent.get("org")))
    log = Journal.begin(home, IMPORT, archive=str(path), near=str(path.parent),
                        redis_prefix=redis_prefix, scratch_folders=[])
    try:
        with when_interrupted("nothing was imported (a replaced org keeps its data)"), \
                _checking(ctx, path) as checking, \
                archive.opened(path, [*keyring(ctx).known(), *(trust or [])], limits) as (
                    folder, manifest, signer):
            log.data["intent"]["scratch_folders"] = [str(folder)]
            log.write()
            crash_point("tenant-import:unpacked")
            checking.close()
            _check_versions(path, manifest, schema_heads(ctx))
            try:
                org_id = uuid.UUID(manifest.org["id"])
            except ValueError as exc:
                raise ValidationError(f"{path}: the manifest's org id {manifest.org['id']!r}"
                                      " is not a UUID; refusing to import") from exc
            slug = manifest.org.get("slug") or ""
            if slug:
                other = resolve_slug(ctx, slug)
                if other is not None and other.id != org_id:
                    raise ValidationError(f"another org ({other.id}) already has the slug "
                                          f"{slug!r} here; nothing was imported")
            held = _held(ctx, org_id, redis_prefix)
            if held and not replace and str(org_id) in finished:
                # this very import was killed after its commit: recovery finished it
                log.finish()
                return Imported(path, manifest.org, {
                    name: dict(found) for name, found in
                    remaining(ctx, org_id, redis_prefix=redis_prefix).items()},
                    False, signer.id)
            if held and not replace:
                raise ValidationError(f"org {slug or org_id} already exists here "
                                      f"({held[0]}...)",
                                      hint=Hint(flag="--replace", does="to replace it"))
            if held:
                _guard(ctx, force, "replace an org in it")
            log.data["intent"].update(org=str(org_id), slug=slug, replace=bool(held))
            log.write()
            with contextlib.ExitStack() as stack:
                saved = None
                if held:
                    saved = stack.enter_context(_saved(ctx, org_id, path, redis_prefix))
                    log.data["intent"].update(saved=str(saved))
                    log.data["intent"]["scratch_folders"].append(str(saved))
                    log.write()
                    crash_point("tenant-import:saved")
                counts = _load(ctx, folder, manifest, org_id, saved, redis_prefix, log)
                crash_point("tenant-import:loaded")
    except BaseException:
        if log.phase != UNDOING:  # else putting a switched store back failed: recover
            log.finish()
        raise
    log.finish()
    return Imported(path, manifest.org, counts, bool(held), signer.id)


def _checking(ctx: Context, path: Path) -> Task:
    """The task of unpacking and checking an archive (closed once it is open)."""
    return ctx.progress.task(f"tenant import: checking {path.name}")


def resolve_slug(ctx: Context, slug: str) -> Org | None:
    with ctx.store(DIRECTORY).tenant() as directory:
        return directory.find_org(slug)


@contextlib.contextmanager
def _saved(ctx: Context, org: uuid.UUID, near: Path, redis_prefix: str) -> Iterator[Path]:
    """The org's current data, unpacked, to put back on failure."""
    scratch = archive.scratch_dir(near, "platformdb-tenant-replaced")
    try:
        manifest = _export_into(ctx, Org(org, None, None, None), scratch, redis_prefix)
        (scratch / archive.MANIFEST).write_text(manifest.to_json())
        yield scratch
    finally:
        archive.forget(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _load(ctx: Context, folder: Path, manifest: archive.Manifest, org: uuid.UUID,
          saved: Path | None, redis_prefix: str,
          log: Journal | None = None) -> dict[str, dict[str, int]]:
    """Stage every store's part, then switch them in, the ``last`` ones at the end (the
    PostgreSQL transaction commits after the other stores are in)."""
    stores = ctx.stores()
    with contextlib.ExitStack() as stack:
        overall = stack.enter_context(ctx.progress.task(
            f"tenant import {manifest.org.get('slug') or org}", total=len(stores) + 1,
            unit="steps"))
        staged: list[tuple[str, TenantImport]] = []
        try:
            for store in stores:
                facet = stack.enter_context(store.tenant(prefix=redis_prefix))
                if log is not None:
                    log.part(store.name, phase="staging")
                    crash_point(f"tenant-import:staging:{store.name}")
                with ctx.progress.task(f"tenant import: loading {store.name}"):
                    staged.append((store.name, facet.stage_import(
                        org, folder / store.name, manifest.rows(store.name),
                        info=manifest.stores.get(store.name, {}),
                        saved=saved / store.name if saved is not None else None)))
                if log is not None:
                    log.part(store.name, phase="staged", **journal_record(staged[-1][1]))
                    crash_point(f"tenant-import:staged:{store.name}")
                overall.advance()
        except BaseException:
            for _, stage in reversed(staged):
                stage.discard()
            raise
        ordered = sorted(staged, key=lambda item: item[1].last)
        with ctx.progress.task("tenant import: switching in"):
            switch_in([stage for _, stage in ordered], [name for name, _ in ordered],
                      journal=log)
        overall.advance()
        return {name: stage.loaded for name, stage in staged}


# ------------------------------------------------------------------ checksums


def checksums(target: Context | Endpoints, ref: str, *,
              redis_prefix: str = "") -> dict[str, dict[str, str]]:
    """A digest of one org's data per table (PostgreSQL, ClickHouse) and structure (Redis)."""
    ctx = context(target)
    org = resolve(ctx, ref).id
    with _facets(ctx.stores(), redis_prefix) as facets:
        return {store.name: facet.checksums(org) for store, facet in facets}

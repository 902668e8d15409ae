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

from platformdb.backup.sets import switch_in
from platformdb.config import DEV_WORDS, development_url, load_settings
from platformdb.errors import CheckFailed, Hint, ValidationError, when_interrupted
from platformdb.ops.context import Context, context
from platformdb.progress import Task, folder_bytes
from platformdb.redaction import redact
from platformdb.stores.base import Org, Size, Store, TenantData, TenantImport
from platformdb.tenant import archive, keys
from platformdb.types import Endpoints

__all__ = ["DEV_WORDS", "Deleted", "Exported", "Imported", "SigningKeys", "Tenant",
           "checksums", "delete_tenant", "export_tenant", "import_limits", "import_tenant",
           "keyring", "list_tenants", "looks_like_development", "remaining", "resolve",
           "rotate_signing_key", "schema_heads", "show_tenant", "signing_keys", "trusted_keys"]

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
                "latest_metric_date": self.latest_metric_date, "totals": self.totals()}

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
    if org.slug is None and not tenant.held():
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
    try:
        with when_interrupted(f"no archive was written at {out} (the scratch copy was "
                              "removed)"):
            manifest = _export_into(ctx, org, folder, redis_prefix)
            with ctx.progress.task(f"tenant export: writing {out.name}", unit="bytes",
                                   total=sum(int(entry["bytes"])
                                             for entry in manifest.files.values())) as task:
                task.measure(folder_bytes(out.parent, only=f".{out.name}.partial"))
                archive.write(folder, manifest, out, ring)
    finally:
        archive.forget(folder)
        shutil.rmtree(folder, ignore_errors=True)
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
    """Remove one org from every store, then check that nothing of it is left.

    The stores go in registry order (PostgreSQL first, in one transaction; then
    ClickHouse; then Redis). Each step removes whatever is left of the org, so a
    delete interrupted after any step finishes when it is run again (by id: the
    slug goes with the organizations row).
    """
    ctx = context(target)
    org = resolve(ctx, ref)
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
                "to finish")

    with when_interrupted(stopped), \
            ctx.progress.task(f"tenant delete {org.slug or org.id}", total=len(stores),
                              unit="steps") as overall:
        for store in stores:
            with ctx.progress.task(f"tenant delete: {store.name}"), \
                    store.tenant(prefix=redis_prefix) as facet:
                removed[store.name] = facet.delete(org.id, keep_audit=keep_audit)
            overall.advance()
    left = remaining(ctx, org.id, redis_prefix=redis_prefix, keep_audit=keep_audit)
    report = Deleted(_org_dict(org), removed, left)
    leftover = [f"{store}.{name}={n}" for store, found in left.items()
                for name, n in found.items() if n]
    if leftover:
        raise CheckFailed(f"org {org.id} still has data after the delete ({', '.join(leftover)});"
                          " writes for it may still be arriving: stop them and run the delete "
                          "again")
    return report


def _org_dict(org: Org) -> dict[str, str]:
    return {"id": str(org.id), "slug": org.slug or "", "name": org.name or ""}


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
    with when_interrupted("nothing was imported (a replaced org keeps its data)"), \
            _checking(ctx, path) as checking, \
            archive.opened(path, [*keyring(ctx).known(), *(trust or [])], limits) as (
                folder, manifest, signer):
        checking.close()
        _check_versions(path, manifest, schema_heads(ctx))
        try:
            org_id = uuid.UUID(manifest.org["id"])
        except ValueError as exc:
            raise ValidationError(f"{path}: the manifest's org id {manifest.org['id']!r} is "
                                  "not a UUID; refusing to import") from exc
        slug = manifest.org.get("slug") or ""
        if slug:
            other = resolve_slug(ctx, slug)
            if other is not None and other.id != org_id:
                raise ValidationError(f"another org ({other.id}) already has the slug {slug!r}"
                                      " here; nothing was imported")
        held = _held(ctx, org_id, redis_prefix)
        if held and not replace:
            raise ValidationError(f"org {slug or org_id} already exists here ({held[0]}...)",
                                  hint=Hint(flag="--replace", does="to replace it"))
        if held:
            _guard(ctx, force, "replace an org in it")
        with contextlib.ExitStack() as stack:
            saved = None
            if held:
                saved = stack.enter_context(_saved(ctx, org_id, path, redis_prefix))
            counts = _load(ctx, folder, manifest, org_id, saved, redis_prefix)
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
          saved: Path | None, redis_prefix: str) -> dict[str, dict[str, int]]:
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
                with ctx.progress.task(f"tenant import: loading {store.name}"):
                    staged.append((store.name, facet.stage_import(
                        org, folder / store.name, manifest.rows(store.name),
                        info=manifest.stores.get(store.name, {}),
                        saved=saved / store.name if saved is not None else None)))
                overall.advance()
        except BaseException:
            for _, stage in reversed(staged):
                stage.discard()
            raise
        ordered = sorted(staged, key=lambda item: item[1].last)
        with ctx.progress.task("tenant import: switching in"):
            switch_in([stage for _, stage in ordered], [name for name, _ in ordered])
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

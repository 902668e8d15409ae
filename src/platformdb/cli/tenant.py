"""`platformdb tenant list | show | export | delete | import | keys`: one org across every
store, and the keys that sign its archives."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from platformdb.cli.base import JsonOption, app, context, print_json, settings, show
from platformdb.cli.ops import RedisPrefixOption
from platformdb.ops import tenant

tenant_app = typer.Typer(help="One org (tenant) across PostgreSQL, ClickHouse and Redis: "
                              "sizes, export, delete, import (docs/TENANTS.md).",
                         no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
keys_app = typer.Typer(help="The keys that sign this deployment's tenant archives "
                            "(docs/TENANTS.md#signed-archives).", no_args_is_help=True)
tenant_app.add_typer(keys_app, name="keys")

def complete_org(incomplete: str) -> list[str]:
    """Shell completion: the slugs of the orgs (nothing when PostgreSQL cannot be read)."""
    try:
        return tenant.slugs(context(start=False, stores=["postgresql"]), incomplete)
    except Exception:  # completion never fails a shell; it offers nothing instead
        return []


OrgArgument = Annotated[str, typer.Argument(metavar="ORG", help="The org's id (uuid) or slug.",
                                            autocompletion=complete_org)]


def _size(value: int) -> str:
    if value < 1024:
        return f"{value:,} B"
    scaled = float(value)
    for unit in ("kB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:,.1f} {unit}"


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False, redis_prefix: RedisPrefixOption = "") -> None:
    """Every org with its size in each store and its latest activity."""
    found = tenant.list_tenants(context(start=False), redis_prefix=redis_prefix)
    if as_json:
        print_json([t.as_dict() for t in found])
        return
    units = found[0].units if found else {}
    columns = [heading for store, unit in units.items()
               for heading in ((f"{store} keys",) if unit == "keys"
                               else (f"{store} rows", f"{store} size"))]
    table = Table("org", "id", "status", *columns, "latest activity", "latest metric")
    for t in found:
        cells = [cell for store, unit in units.items()
                 for cell in ((f"{t.total(store):,}",) if unit == "keys"
                              else (f"{t.total(store):,}", _size(t.total(store, "bytes"))))]
        table.add_row(escape(t.slug or "-"), t.id, t.status or "(deleted)", *cells,
                      _when(t.latest_activity), _when(t.latest_metric_date))
    show(table)


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat() if isinstance(value, date) else "-"


@tenant_app.command("show")
def tenant_show(org: OrgArgument, as_json: JsonOption = False,
                redis_prefix: RedisPrefixOption = "") -> None:
    """One org: rows and bytes per table, keys per Redis structure, latest activity."""
    found = tenant.show_tenant(context(start=False), org, redis_prefix=redis_prefix)
    if as_json:
        print_json(found.as_dict())
        return
    show(f"org {escape(found.slug or '(deleted)')} {found.id} "
         f"({escape(found.name or '-')}, {found.status or 'no organizations row'})")
    table = Table("store", "table / structure", "rows / keys", "size")
    for store, sizes in found.sizes.items():
        for name, size in sizes.items():
            table.add_row(store, name, f"{size.count:,}",
                          _size(size.bytes) if size.bytes is not None else "-")
    show(table)
    show(f"latest activity: {found.latest_activity or '-'}; "
         f"latest metric date: {found.latest_metric_date or '-'}")
    for place, n in found.copies.items():  # `tenant delete` removes these too
        show(f"scratch copy: {escape(place)} ({n:,})")


def _counts_table(title: str, counts: dict[str, dict[str, int]]) -> Table:
    table = Table("store", "table / structure", "rows / keys", title=title)
    for store, found in counts.items():
        for name, n in found.items():
            table.add_row(store, name, f"{n:,}")
    return table


@tenant_app.command("export")
def tenant_export(
    org: OrgArgument,
    out: Annotated[Path, typer.Option("--out", metavar="PATH",
                                      help="The archive to write (a new .tar file).")],
    as_json: JsonOption = False,
    redis_prefix: RedisPrefixOption = "",
) -> None:
    """Write one org's rows and queued jobs to one archive (never overwrites a file)."""
    done = tenant.export_tenant(context(start=True), org, out, redis_prefix=redis_prefix)
    if as_json:
        print_json({"path": done.path, "org": done.org, "counts": done.counts,
                    "schema": done.manifest.schema, "signed_by": done.signed_by})
        return
    show(_counts_table(f"exported {done.org['slug'] or done.org['id']} to {done.path} "
                       f"(signed by key {done.signed_by})", done.counts), markup=False)


@tenant_app.command("delete")
def tenant_delete(
    org: OrgArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Also on a database that does not "
                                                        "look like a development one.")] = False,
    keep_audit: Annotated[bool, typer.Option(
        "--keep-audit", help="Keep the org's audit trail in PostgreSQL.")] = False,
    as_json: JsonOption = False,
    redis_prefix: RedisPrefixOption = "",
) -> None:
    """Remove one org from every store, then check that nothing of it is left."""
    done = tenant.delete_tenant(context(start=True), org, yes=yes, force=force,
                                keep_audit=keep_audit, redis_prefix=redis_prefix)
    if as_json:
        print_json({"org": done.org, "removed": done.removed, "remaining": done.remaining})
        return
    show(_counts_table(f"deleted {done.org['slug'] or done.org['id']}: nothing is left",
                       done.removed), markup=False)


@tenant_app.command("import")
def tenant_import(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="An archive of `tenant export`.")],
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace the org if it exists here (its data is put back if the "
                          "import fails).")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --replace: also on a database "
                                                        "that does not look like a development "
                                                        "one.")] = False,
    trust_key: Annotated[list[str] | None, typer.Option(
        "--trust-key", metavar="HEX|FILE",
        help="Also accept an archive signed by this public key (another deployment's "
             "`tenant keys show`); repeatable.")] = None,
    max_size: Annotated[str, typer.Option(
        "--max-size", metavar="SIZE", help="Refuse an archive that unpacks to more "
                                           "(e.g. 64G).")] = "16G",
    max_member_size: Annotated[str, typer.Option(
        "--max-member-size", metavar="SIZE", help="Refuse an archive with a larger file.")
    ] = "8G",
    max_members: Annotated[int, typer.Option(
        "--max-members", metavar="N", help="Refuse an archive with more entries.")] = 1000,
    as_json: JsonOption = False,
    redis_prefix: RedisPrefixOption = "",
) -> None:
    """Restore an exported org, all or nothing (signature first, then checksums, every row's
    org, counts after)."""
    limits = tenant.import_limits(max_size, max_member_size, max_members)
    trust = tenant.trusted_keys(trust_key or [])
    done = tenant.import_tenant(context(start=True), path, replace=replace, force=force,
                                redis_prefix=redis_prefix, trust=trust, limits=limits)
    if as_json:
        result: dict[str, Any] = {"path": done.path, "org": done.org, "counts": done.counts,
                                  "replaced": done.replaced, "signed_by": done.signed_by}
        print_json(result)
        return
    verb = "replaced" if done.replaced else "imported"
    show(_counts_table(f"{verb} {done.org['slug'] or done.org['id']} from {done.path} "
                       f"(signed by key {done.signed_by})", done.counts), markup=False)


def _show_keys(found: tenant.SigningKeys, as_json: bool, title: str) -> None:
    if as_json:
        print_json(found.as_dict())
        return
    show(title, markup=False)
    show(f"public key {found.current.hex}", markup=False)
    show(f"key id {found.current.id}  (folder {found.folder})", markup=False)
    for old in found.retired:
        show(f"retired {old.id} {old.hex} (still verifies this deployment's archives)",
             markup=False)


@keys_app.command("show")
def keys_show(as_json: JsonOption = False) -> None:
    """The public key archives of this deployment are signed with (created on first use):
    hand it to a deployment that imports them (`tenant import --trust-key`)."""
    found = tenant.signing_keys(settings().home)
    _show_keys(found, as_json, "tenant archives exported here are signed with:")


@keys_app.command("rotate")
def keys_rotate(as_json: JsonOption = False) -> None:
    """A new signing key for the next exports; archives signed before keep importing here."""
    found = tenant.rotate_signing_key(settings().home)
    _show_keys(found, as_json, f"new signing key {found.current.id}"
               + (f" (replaces {found.rotated_from.id})" if found.rotated_from else ""))

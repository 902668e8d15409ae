"""One org in ClickHouse: sizes, export (Native), delete and staged import.

Every MergeTree table with an ``org_id`` column holds tenant rows: the raw
metrics, the hourly and daily rollups, user events, API logs and their
rollups. Queries take the org as a server-side parameter (``{org:UUID}``).

- **Export** streams each table's rows of the org and checks that the org's
  counts did not move meanwhile; when they did, it reads every table again
  from a snapshot (an empty copy in a scratch database that takes the live
  table's parts by hard link, as the backup does), so the rows in a file and
  the count in the manifest are always the same rows.
- **Delete** is a mutation per table, ``ALTER TABLE ... DELETE WHERE org_id =
  {org:UUID}`` with ``mutations_sync = 2`` (it returns when every replica
  finished); on a cluster the local tables, ``ON CLUSTER``.
- **Import** loads each file into a staging copy of its table (no materialized
  view reads a staging table, so the rollups are not counted twice) that carries
  a constraint ``CHECK org_id = <the archive's org>`` (a row of any other org
  refuses the whole archive, before anything live is touched), checks the
  counts there, and only then moves the parts in with ``ATTACH PARTITION ...
  FROM`` (which fires no view either). :func:`delete` undoes it.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformdb.clickhouse import (
    ClickHouseError,
    command,
    connect,
    quote_identifier,
    rows,
    scratch_database,
    translated,
)
from platformdb.errors import CheckFailed, ConfigError, ValidationError
from platformdb.stores.base import Org, Size, TenantPart, compare
from platformdb.stores.clickhouse.ddl import Topology, cluster_clause
from platformdb.tenant.archive import MANIFEST, HashingWriter

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

FORMAT = "Native"
LOAD_SETTINGS = {"optimize_on_insert": 0, "insert_deduplicate": 0, "async_insert": 0,
                 "max_partitions_per_insert_block": 0}
_PARTITION_ID = re.compile(r"^[A-Za-z0-9_-]+$")
ORG_CONSTRAINT = "archive_org"
_VIOLATED = re.compile(r"violated at row (\d+).*?Column values: (.*?)\.? \(VIOLATED_CONSTRAINT\)",
                       re.DOTALL)
VIOLATED_CONSTRAINT = 469


def tables(client: Client) -> list[str]:
    """The MergeTree tables of the client's database with an ``org_id`` column."""
    return [str(name) for (name,) in rows(
        client,
        "SELECT t.name FROM system.tables t WHERE t.database = currentDatabase()"
        " AND t.engine LIKE '%MergeTree' AND NOT t.is_temporary AND t.name IN ("
        "  SELECT table FROM system.columns WHERE database = currentDatabase()"
        "  AND name = 'org_id') ORDER BY t.name")]


def _table(client: Client, name: str) -> str:
    return f"{quote_identifier(str(client.database))}.{quote_identifier(name)}"


def sizes(client: Client, org: uuid.UUID | None = None
          ) -> dict[uuid.UUID, dict[str, tuple[int, int]]]:
    """``{org: {table: (rows, bytes)}}``; bytes: the table's compressed size times the
    org's share of its rows (an estimate)."""
    found: dict[uuid.UUID, dict[str, tuple[int, int]]] = {}
    for name in tables(client):
        total_rows, total_bytes = rows(
            client, "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts"
                    " WHERE database = currentDatabase() AND table = {t:String} AND active",
            {"t": name})[0]
        counts = rows(client, "SELECT org_id, count() FROM {t:Identifier} GROUP BY org_id",
                      {"t": name}) if org is None else rows(
            client, "SELECT org_id, count() FROM {t:Identifier} WHERE org_id = {org:UUID}"
                    " GROUP BY org_id", {"t": name, "org": org})
        for key, n in counts:
            share = int(int(total_bytes or 0) * int(n) / int(total_rows)) if total_rows else 0
            found.setdefault(uuid.UUID(str(key)), {})[name] = (int(n), share)
    return found


def activity(client: Client, org: uuid.UUID | None = None) -> dict[uuid.UUID, date]:
    """The latest metric date per org (``campaign_metrics_daily``), when the table exists."""
    if "campaign_metrics_daily" not in tables(client):
        return {}
    found = rows(client, "SELECT org_id, max(date) FROM campaign_metrics_daily GROUP BY org_id"
                 if org is None else "SELECT org_id, max(date) FROM campaign_metrics_daily"
                 " WHERE org_id = {org:UUID} GROUP BY org_id", {"org": org} if org else None)
    return {uuid.UUID(str(key)): value for key, value in found}


def counts(client: Client, org: uuid.UUID) -> dict[str, int]:
    return _counts(client, org, tables(client))


def checksums(client: Client, org: uuid.UUID) -> dict[str, str]:
    """A digest of each table's rows of ``org`` (aggregate states finalized first)."""
    digests = {}
    for name in tables(client):
        columns = rows(client, "SELECT name, type FROM system.columns WHERE database ="
                               " currentDatabase() AND table = {t:String} ORDER BY position",
                       {"t": name})
        hashed = ", ".join(
            f"toString(finalizeAggregation({quote_identifier(str(c))}))"
            if str(t).startswith("AggregateFunction") else quote_identifier(str(c))
            for c, t in columns)
        # names quoted by quote_identifier; a column list cannot be one parameter
        row = rows(client, f"SELECT count(), toString(sum(cityHash64({hashed})))"  # noqa: S608
                           f" FROM {_table(client, name)} WHERE org_id = {{org:UUID}}",
                   {"org": org})[0]
        digests[name] = f"{row[0]}:{row[1]}"
    return digests


def schema_head(client: Client) -> int:
    from platformdb.stores.clickhouse.driver import ClickHouseDriver

    applied = ClickHouseDriver(client).applied()
    return max((m.version for m in applied), default=0)


# ------------------------------------------------------------------ export


def _partitions(client: Client, database: str, table: str) -> list[str]:
    found = [str(p) for (p,) in rows(
        client, "SELECT DISTINCT partition_id FROM system.parts WHERE database = {d:String}"
                " AND table = {t:String} AND active ORDER BY partition_id",
        {"d": database, "t": table})]
    for partition in found:
        if not _PARTITION_ID.match(partition):
            raise ValidationError(f"unexpected partition id {partition!r} in {table}")
    return found


def _copy_parts(client: Client, source_db: str, target_db: str, table: str) -> None:
    source = f"{quote_identifier(source_db)}.{quote_identifier(table)}"
    target = f"{quote_identifier(target_db)}.{quote_identifier(table)}"
    for partition in _partitions(client, source_db, table):
        command(client, f"ALTER TABLE {target} ATTACH PARTITION ID '{partition}' FROM {source}")


def _hold(client: Client, table: str) -> None:
    command(client, f"SYSTEM STOP MERGES {table}")
    command(client, f"SYSTEM STOP TTL MERGES {table}")


def export(client: Client, org: uuid.UUID, folder: Path) -> dict[str, int]:
    """Each table's rows of ``org`` as ``folder/<table>.native``; how many rows each holds.

    The org's rows are counted (one query for every table), streamed, and
    counted again: equal counts mean nothing was inserted or merged for the org
    meanwhile (the usual case: its traffic is stopped), and the files match the
    counts. Otherwise the tables are read again from hard-linked snapshots.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = tables(client)
    before = _counts(client, org, names)
    for name in names:
        _stream(client, str(client.database), name, org, folder / f"{name}.native")
    if _counts(client, org, names) == before:
        return before
    return _export_snapshots(client, org, folder, names)


def _counts(client: Client, org: uuid.UUID, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    # every table's count in one round trip; names quoted by _table
    counts_sql = ", ".join(f"(SELECT count() FROM {_table(client, name)}"  # noqa: S608
                           " WHERE org_id = {org:UUID})" for name in names)
    found = rows(client, f"SELECT {counts_sql}", {"org": org})[0]
    return {name: int(n) for name, n in zip(names, found, strict=True)}


def _stream(client: Client, database: str, table: str, org: uuid.UUID, path: Path) -> None:
    query = "SELECT * FROM {d:Identifier}.{t:Identifier} WHERE org_id = {org:UUID}"
    with HashingWriter(path) as out, translated():
        _drain(client.raw_stream(query, parameters={"d": database, "t": table, "org": org},
                                 fmt=FORMAT), out)


def _export_snapshots(client: Client, org: uuid.UUID, folder: Path,
                      names: list[str]) -> dict[str, int]:
    """The tables read from snapshots: copies that take the parts by hard link, merges off."""
    database = str(client.database)
    found: dict[str, int] = {}
    with scratch_database(client, f"{client.database}_tenant_export") as snapshots:
        for name in names:
            snapshot = f"{quote_identifier(snapshots)}.{quote_identifier(name)}"
            command(client, f"CREATE TABLE {snapshot} AS {_table(client, name)}")
            _hold(client, snapshot)
            _copy_parts(client, database, snapshots, name)
            found[name] = int(rows(client, "SELECT count() FROM {d:Identifier}.{t:Identifier}"
                                           " WHERE org_id = {org:UUID}",
                                   {"d": snapshots, "t": name, "org": org})[0][0])
            _stream(client, snapshots, name, org, folder / f"{name}.native")
            command(client, f"DROP TABLE {snapshot} SYNC")
    return found


def _drain(stream: Any, out: HashingWriter) -> None:
    try:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            out.write(chunk)
    finally:
        stream.close()


# ------------------------------------------------------------------ delete


def delete(client: Client, org: uuid.UUID, topology: Topology | None = None) -> dict[str, int]:
    """Remove ``org`` from every table (rollups included); how many rows each held."""
    removed = counts(client, org)
    on_cluster = cluster_clause(topology) if topology is not None else ""
    for name, held in removed.items():
        if not held:
            continue  # a re-run does no mutation where nothing is left
        command(client, f"ALTER TABLE {_table(client, name)}{on_cluster} DELETE WHERE"
                        " org_id = {org:UUID}", {"org": org},
                settings={"mutations_sync": 2})
    return removed


# ------------------------------------------------------------------ import


class Staged:
    """An archive's ClickHouse files loaded into a staging database, not yet visible."""

    def __init__(self, client: Client, scratch: str, loaded: dict[str, int]) -> None:
        self.client = client
        self.scratch = scratch
        self.loaded = loaded

    def attach(self) -> None:
        """Move the staged parts into the live tables (no materialized view fires)."""
        for name, held in self.loaded.items():
            if held:
                _copy_parts(self.client, self.scratch, str(self.client.database), name)

    def discard(self) -> None:
        command(self.client, f"DROP DATABASE IF EXISTS {quote_identifier(self.scratch)} SYNC")


def stage(client: Client, folder: Path, expected: dict[str, int], org: uuid.UUID) -> Staged:
    """Load ``folder/<table>.native`` into staging copies that accept rows of ``org``
    only; checks every count there."""
    present = set(tables(client))
    missing = sorted(set(expected) - present)
    if missing:
        raise ValidationError(f"the archive holds ClickHouse table {missing[0]}, which this "
                              "deployment does not have")
    scratch = f"{client.database}_tenant_import_{uuid.uuid4().hex[:8]}"
    command(client, f"CREATE DATABASE {quote_identifier(scratch)}")
    staged = Staged(client, scratch, {})
    try:
        for name, count in sorted(expected.items()):
            table = f"{quote_identifier(scratch)}.{quote_identifier(name)}"
            command(client, f"CREATE TABLE {table} AS {_table(client, name)}")
            _hold(client, table)
            command(client, f"ALTER TABLE {table} ADD CONSTRAINT {ORG_CONSTRAINT} CHECK"
                            f" org_id = toUUID('{org}')")  # a uuid.UUID: no quoting needed
            path = folder / f"{name}.native"
            if path.stat().st_size:
                _insert(client, table, path, f"clickhouse/{name}.native", org)
            held = int(rows(client, "SELECT count() FROM {d:Identifier}.{t:Identifier}",
                            {"d": scratch, "t": name})[0][0])
            if held != count:
                raise CheckFailed(f"ClickHouse table {name}: the archive's file holds {held} "
                                  f"rows, its manifest says {count}; nothing was imported")
            staged.loaded[name] = held
    except BaseException:
        staged.discard()
        raise
    return staged


def _insert(client: Client, table: str, path: Path, where: str, org: uuid.UUID) -> None:
    try:
        with open(path, "rb") as handle, translated():
            client.raw_insert(table, insert_block=handle.read(), fmt=FORMAT,
                              settings=LOAD_SETTINGS)
    except ClickHouseError as exc:
        found = _VIOLATED.search(str(exc))
        if exc.code != VIOLATED_CONSTRAINT or ORG_CONSTRAINT not in str(exc) or not found:
            raise
        raise ValidationError(f"{where} row {found.group(1)} (of its block): {found.group(2)} "
                              f"is not the archive's org {org}; refusing the whole archive "
                              "(nothing was changed)") from exc

# ------------------------------------------------------------------ the store's facet


@contextlib.contextmanager
def opened(url: str, *, wait: float, cluster: str | None = None) -> Iterator[ClickHouseTenant]:
    """The facet on a client of ``url`` (closed on exit); ``cluster``: deletes run
    ``ON CLUSTER`` it."""
    with connect(url, wait=wait) as client:
        topology = Topology.on_cluster(cluster, str(client.database)) if cluster else None
        yield ClickHouseTenant(client, topology)


class ClickHouseTenant:
    """Orgs' data in ClickHouse (:class:`platformdb.stores.base.TenantData`) on one client.

    ``topology``: the cluster a delete runs ``ON CLUSTER`` of; export and import do not
    support a cluster yet (docs/TENANTS.md) and refuse it.
    """

    unit = "rows"
    activity_label = "latest_metric_date"

    def __init__(self, client: Client, topology: Topology | None = None) -> None:
        self.client = client
        self.topology = topology

    def orgs(self) -> list[Org]:
        return []

    def find_org(self, ref: str) -> Org | None:
        return None

    def sizes(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, Size]]:
        return {key: {name: Size(n, b) for name, (n, b) in found.items()}
                for key, found in sizes(self.client, org).items()}

    def activity(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime | date]:
        found: dict[uuid.UUID, datetime | date] = dict(activity(self.client, org))
        return found

    def counts(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return counts(self.client, org)

    def checksums(self, org: uuid.UUID) -> dict[str, str]:
        return checksums(self.client, org)

    def schema_head(self) -> int:
        return schema_head(self.client)

    def delete(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return delete(self.client, org, self.topology)

    def _no_cluster(self, what: str) -> None:
        if self.topology is not None:
            raise ConfigError(f"tenant {what} does not support a ClickHouse cluster yet "
                              "(tenant delete does); see docs/TENANTS.md")

    def export(self, org: uuid.UUID, folder: Path) -> TenantPart:
        self._no_cluster("export")
        found = export(self.client, org, folder)
        return TenantPart({f"{name}.native": n for name, n in found.items()},
                          {"format": FORMAT, "tables": list(found)}, self.schema_head())

    def scratch_copies(self, org: uuid.UUID) -> dict[str, int]:
        return scratch_copies(self.client, org)

    def erase_scratch(self, org: uuid.UUID) -> dict[str, int]:
        return erase_scratch(self.client, org)

    def drop_staging(self, names: list[str] | None) -> list[str]:
        if names is None:  # every import staging database of this database
            names = [str(name) for (name,) in rows(
                self.client, "SELECT name FROM system.databases WHERE startsWith(name,"
                             " {p:String})", {"p": f"{self.client.database}_tenant_import_"})]
        for name in names:
            drop_scratch(self.client, name)
        return names

    def stage_import(self, org: uuid.UUID, folder: Path, expected: dict[str, int], *,
                     info: dict[str, Any], saved: Path | None) -> ClickHouseImport:
        self._no_cluster("import")
        return ClickHouseImport(self.client, org, stage(self.client, folder, expected, org),
                                expected, saved)


class ClickHouseImport:
    """The archive's rows in a staging database; switching attaches their parts."""

    store = "clickhouse"
    last = False

    def __init__(self, client: Client, org: uuid.UUID, staged: Staged,
                 expected: dict[str, int], saved: Path | None) -> None:
        self.client = client
        self.org = org
        self.staged = staged
        self.loaded = staged.loaded
        self.expected = expected
        self.saved = saved

    def journal_record(self) -> dict[str, Any]:
        return {"scratch": self.staged.scratch}

    def switch(self) -> None:
        try:
            if self.saved is not None:
                delete(self.client, self.org)
            self.staged.attach()
            compare("clickhouse", counts(self.client, self.org), self.expected)
        except BaseException:
            self.undo()
            raise

    def undo(self) -> None:
        """Take out what the import attached; put a replaced org's rows back; drop the
        staging database (a switched part is undone, never discarded, by the caller)."""
        try:
            delete(self.client, self.org)
            if self.saved is not None:
                old = stage(self.client, self.saved, _saved_rows(self.saved), self.org)
                try:
                    old.attach()
                finally:
                    old.discard()
        finally:
            self.staged.discard()

    def commit(self) -> None:
        self.staged.discard()

    def discard(self) -> None:
        self.staged.discard()


def _saved_rows(folder: Path) -> dict[str, int]:
    """A saved part's row counts, from the manifest of the archive folder it is in."""
    manifest = json.loads((folder.parent / MANIFEST).read_text())
    return {name.removeprefix(f"{folder.name}/").split(".", 1)[0]: int(entry["rows"])
            for name, entry in manifest["files"].items()
            if name.startswith(f"{folder.name}/")}


# ------------------------------------------------------------------ scratch copies

SCRATCH = r"_(tenant_import|tenant_export|restore)_"
"""The scratch databases the platform makes beside ``<database>``: tenant imports'
staging, tenant exports' snapshots, restores' scratch copies."""


def scratch_copies(client: Client, org: uuid.UUID) -> dict[str, int]:
    """``<scratch database>.<table>`` -> rows of ``org`` it holds, for every scratch
    database of this database (:data:`SCRATCH`) that holds any."""
    found: dict[str, int] = {}
    for database, table in rows(
            client, "SELECT c.database, c.table FROM system.columns c JOIN system.tables t"
                    " ON t.database = c.database AND t.name = c.table"
                    " WHERE startsWith(c.database, {p:String}) AND match(c.database, {s:String})"
                    " AND c.name = 'org_id' AND t.engine LIKE '%MergeTree' ORDER BY 1, 2",
            {"p": f"{client.database}_", "s": SCRATCH}):
        held = int(rows(client, "SELECT count() FROM {d:Identifier}.{t:Identifier}"
                                " WHERE org_id = {org:UUID}",
                        {"d": database, "t": table, "org": org})[0][0])
        if held:
            found[f"{database}.{table}"] = held
    return found


def erase_scratch(client: Client, org: uuid.UUID) -> dict[str, int]:
    """Delete ``org``'s rows from every scratch copy (other orgs' rows stay); what each held."""
    found = scratch_copies(client, org)
    for name in found:
        database, table = name.split(".", 1)
        command(client, f"ALTER TABLE {quote_identifier(database)}.{quote_identifier(table)}"
                        " DELETE WHERE org_id = {org:UUID}", {"org": org},
                settings={"mutations_sync": 2})
    return found


def drop_scratch(client: Client, database: str) -> None:
    """Drop one tenant-import staging database (a killed import's, named by its journal)."""
    if database.startswith(f"{client.database}_tenant_import_"):
        command(client, f"DROP DATABASE IF EXISTS {quote_identifier(database)} SYNC")

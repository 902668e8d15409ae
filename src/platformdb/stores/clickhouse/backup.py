"""ClickHouse backups: every table in ClickHouse's Native format (zstd), DDL and a manifest.

The same logical format on chDB and on a server (``BACKUP ... TO Disk`` needs
a backup disk configured on the server; this works against any server the URL
reaches, and on chDB). A folder holds ``schema.sql`` (the CREATE statements),
``data/<table>.native.zst`` per MergeTree table (the migration ledger
included) and ``manifest.json`` with row counts and checksums.

**Backup.** Each table is read from a snapshot: an empty copy in a scratch
database, merges and TTL stopped on it, takes the table's parts by hard link
(``ATTACH PARTITION ... FROM``). Counting, checksumming and dumping read the
same parts, while the live table keeps merging and taking inserts. Every table
is snapshotted first, back to back; ClickHouse cannot take them at one instant,
so a row inserted in between may be in raw's snapshot and not the hourly one (or
the reverse). :func:`reconcile_rollups` then rebuilds, from the source snapshot
and with the view's own query, every rollup bucket that differs from it: the
backup's rollups equal the rollup of its raw rows (buckets within the source's
TTL; older ones, which the source no longer holds, are kept as they are).

**Restore** is separately callable steps, so that ``restore all`` can stage
every store before it switches any (:class:`StagedRestore` holds them together
with the connection):

1. :func:`stage` creates the tables in a scratch database, stops merges and
   TTL on them and loads the data, several tables at once (a thread and a
   connection each, :func:`default_jobs`), with ``optimize_on_insert = 0`` and
   deduplication off: exactly the rows that were backed up, unmerged
   rollup parts and rows past their TTL included. No materialized view exists
   there, so nothing is counted twice.
2. :func:`verify` compares each scratch table's row count and content
   checksum (``cityHash64`` of its columns; ``AggregateFunction`` states are
   left out) with the manifest. With merges and TTL stopped, the comparison is
   exact: a row at the TTL edge or an unmerged rollup row is still there.
3. :func:`switch` exchanges each table with its staged copy (``EXCHANGE
   TABLES``, atomic per table; the old tables wait in the scratch database)
   while the target's views stay: a materialized view follows its source and
   destination tables by name, so it feeds the exchanged tables at once. Only
   views the backup defines differently are dropped and recreated (after the
   data); dictionaries are recreated. :func:`undo` puts the old contents back.
   A killed switch is finished or undone from its journal record
   (:func:`recover`: each table's UUID says on which side it is).
4. :func:`commit` starts merges and TTL on the restored tables and drops the
   old ones: rows past their TTL expire from then on, as they would have on the
   source, and rollup parts fold.

A failed :func:`stage` or :func:`verify` leaves the target untouched
(:func:`discard` drops the scratch database); a failure inside :func:`switch`
puts the old contents back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from platformdb.backup import Restored
from platformdb.backup.manifest import (
    Manifest,
    TableState,
    backup_folder,
    new_manifest,
    read_manifest,
)
from platformdb.clickhouse import (
    command,
    connect,
    quote_identifier,
    rows,
    scratch_database,
    translated,
)
from platformdb.errors import CheckFailed, Hint, ValidationError
from platformdb.journal import crash_point
from platformdb.migrate import discover, migrations_dir
from platformdb.redaction import redact
from platformdb.stores.clickhouse.ddl import Topology, render
from platformdb.stores.clickhouse.dictionaries import collection_name, ensure_collection
from platformdb.stores.clickhouse.driver import LOCK_TABLE, ClickHouseDriver

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

STORE = "clickhouse"
FORMAT = "Native"
COMPRESSION = "zstd"
ZSTD_LEVEL = 3
LOAD_SETTINGS = {
    "optimize_on_insert": 0,  # a SummingMergeTree would fold unmerged rows while loading
    "insert_deduplicate": 0,  # two equal blocks in a backup are two blocks of data
    "async_insert": 0,
    "max_partitions_per_insert_block": 0,
}
MAX_JOBS = 4
_PARTITION_ID = re.compile(r"^[A-Za-z0-9_-]+$")
Placeholders = Mapping[str, str] | Callable[[], Mapping[str, str]] | None


def objects(client: Client, database: str) -> list[tuple[str, str, str]]:
    """(name, engine, create query) of the database, tables before views."""
    found = rows(
        client,
        "SELECT name, engine, create_table_query FROM system.tables"
        " WHERE database = {db:String} AND name != {lock:String} AND NOT is_temporary"
        " ORDER BY engine = 'MaterializedView', engine = 'Dictionary', name",
        {"db": database, "lock": LOCK_TABLE})
    return [(str(n), str(e), str(q)) for n, e, q in found]


def table_state(client: Client, database: str, table: str) -> TableState:
    columns = [str(name) for (name,) in rows(
        client,
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " AND type NOT LIKE 'AggregateFunction%' ORDER BY position",
        {"db": database, "t": table})]
    hashed = ", ".join(quote_identifier(c) for c in columns)
    # every name quoted by quote_identifier; the column list cannot be one parameter
    row = rows(client, f"SELECT count(), toString(sum(cityHash64({hashed})))"  # noqa: S608
                       f" FROM {quote_identifier(database)}.{quote_identifier(table)}")[0]
    return TableState(rows=int(row[0]), checksum=str(row[1]))


def states(client: Client, database: str) -> dict[str, TableState]:
    return {name: table_state(client, database, name)
            for name, engine, _ in objects(client, database) if engine.endswith("MergeTree")}


# ------------------------------------------------------------------ backup


def backup(url: str, out_dir: Path) -> Path:
    """Back up the ClickHouse database at ``url`` into a new folder under ``out_dir``."""
    folder = backup_folder(out_dir, STORE)
    (folder / "data").mkdir()
    with connect(url) as client:
        database = str(client.database)
        found = objects(client, database)
        (folder / "schema.sql").write_text(
            "".join(f"-- {name} ({engine})\n{query};\n\n" for name, engine, query in found))
        tables: dict[str, TableState] = {}
        merge_trees = [name for name, engine, _ in found if engine.endswith("MergeTree")]
        with scratch_database(client, f"{database}_backup") as snapshots:
            for name in merge_trees:  # every table first, back to back
                _snapshot(client, database, snapshots, name)
            rebuilt = reconcile_rollups(client, database, snapshots, found)
            for name in merge_trees:
                tables[name] = _dump(client, snapshots, name,
                                     folder / "data" / f"{name}.native.zst")
        version = str(rows(client, "SELECT version()")[0][0])
        labels = [f"{r.version:03d}_{r.name}" for r in ClickHouseDriver(client).applied()]
    manifest = new_manifest(
        STORE, tools={"clickhouse": version}, schema_version=len(labels) or None,
        migrations=labels, tables=tables,
        extra={"database": database, "format": FORMAT, "compression": COMPRESSION,
               "objects": [[name, engine] for name, engine, _ in found],
               # no secret: a restore makes its target's collection from the dictionaries'
               # login of the machine it restores on
               "named_collections": _collections(found),
               # rollup buckets rebuilt from their snapshot source (rows in flight)
               "rollups_rebuilt": rebuilt})
    manifest.write(folder)
    return folder


def _snapshot(client: Client, database: str, snapshots: str, table: str) -> None:
    """The table's parts, hard-linked into a snapshot table with merges stopped."""
    live = f"{quote_identifier(database)}.{quote_identifier(table)}"
    snapshot = f"{quote_identifier(snapshots)}.{quote_identifier(table)}"
    command(client, f"CREATE TABLE {snapshot} AS {live}")
    _hold(client, snapshot)
    partitions = [str(p) for (p,) in rows(
        client, "SELECT DISTINCT partition_id FROM system.parts WHERE database = {d:String}"
                " AND table = {t:String} AND active", {"d": database, "t": table})]
    for partition in partitions:
        _check_partition(partition, table)
        command(client, f"ALTER TABLE {snapshot} ATTACH PARTITION ID '{partition}' FROM {live}")


def _check_partition(partition: str, table: str) -> None:
    if not _PARTITION_ID.match(partition):
        raise ValidationError(f"unexpected partition id {partition!r} in {table}")


def _dump(client: Client, snapshots: str, table: str, path: Path) -> TableState:
    """A snapshot table counted, checksummed, dumped and dropped."""
    snapshot = f"{quote_identifier(snapshots)}.{quote_identifier(table)}"
    state = table_state(client, snapshots, table)
    with open(path, "wb") as out, translated():
        compressor = _zstd().ZstdCompressor(level=ZSTD_LEVEL)
        stream: Any = client.raw_stream("SELECT * FROM {d:Identifier}.{t:Identifier}",
                                        parameters={"d": snapshots, "t": table}, fmt=FORMAT)
        try:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                out.write(compressor.compress(chunk))
        finally:
            stream.close()
        out.write(compressor.flush())
    command(client, f"DROP TABLE {snapshot} SYNC")
    return state


# ------------------------------------------------------------ rollups = raw


@dataclass(frozen=True)
class _Rollup:
    """A materialized view: ``source`` rows, grouped by ``select``, land in ``target``."""

    view: str
    source: str
    target: str
    select: str  # over the database's tables, fully qualified
    bucket: str  # the target's time column (the select's first alias)
    bucket_of: str  # the source column the bucket is computed from


_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW \S+ TO (?P<target>\S+) \(.*?\) AS "
                   r"(?P<select>SELECT (?P<expr>.+?) AS (?P<bucket>\w+), .* FROM (?P<source>\S+)"
                   r" GROUP BY .*)$", re.S)


def _rollups(found: list[tuple[str, str, str]], database: str) -> list[_Rollup]:
    """The materialized views of a schema, each after the ones that feed its source."""
    views: list[_Rollup] = []
    for name, engine, query in found:
        match = _VIEW.match(query) if engine == "MaterializedView" else None
        if match is None:
            continue
        column = re.findall(r"\b(\w+)\s*\)", match["expr"]) or [match["expr"]]
        views.append(_Rollup(name, _unqualified(match["source"], database),
                             _unqualified(match["target"], database), match["select"],
                             match["bucket"], column[-1]))
    targets = {view.target for view in views}
    return sorted(views, key=lambda view: (view.source in targets, view.view))


def _unqualified(name: str, database: str) -> str:
    return name.replace("`", "").removeprefix(f"{database}.")


def reconcile_rollups(client: Client, database: str, snapshots: str,
                      found: list[tuple[str, str, str]]) -> dict[str, int]:
    """Make each snapshot rollup equal the rollup of its snapshot source.

    The tables are hard-linked one after another while inserts go on: a row inserted
    in between reached raw's snapshot but not the hourly one, or the other way round.
    For every bucket (hour, day) whose rows are all within the source's TTL (so the
    source still holds every row that went into it), the rollup's re-aggregated
    counters are compared with the view's query run over the source snapshot; each
    bucket that differs (exactly the buckets rows in flight touched) is rebuilt
    from the source snapshot with the view's own query, partition by partition
    (``REPLACE PARTITION``). Cascaded views (hourly to daily) follow their source.
    Buckets past the TTL edge are left as they are: the source no longer holds them.
    Returns the number of buckets rebuilt per rollup table.
    """
    creates = {name: query for name, _, query in found}
    rebuilt: dict[str, int] = {}
    for view in _rollups(found, database):
        if view.source not in creates or view.target not in creates:
            continue
        buckets = _differing_buckets(client, database, snapshots, view,
                                     creates[view.source])
        if buckets:
            _rebuild(client, database, snapshots, view, buckets)
            rebuilt[view.target] = rebuilt.get(view.target, 0) + len(buckets)
    return rebuilt


def _columns(client: Client, database: str, table: str) -> list[tuple[str, str]]:
    return [(str(n), str(t)) for n, t in rows(
        client, "SELECT name, type FROM system.columns WHERE database = {d:String}"
                " AND table = {t:String} ORDER BY position", {"d": database, "t": table})]


def _differing_buckets(client: Client, database: str, snapshots: str, view: _Rollup,
                       source_create: str) -> list[str]:
    keys = [str(k).strip() for k in str(rows(
        client, "SELECT sorting_key FROM system.tables WHERE database = {d:String}"
                " AND name = {t:String}", {"d": snapshots, "t": view.target})[0][0]).split(",")]
    counters = [name for name, kind in _columns(client, snapshots, view.target)
                if name not in keys and not kind.startswith("AggregateFunction")
                and re.match(r"^(SimpleAggregateFunction\(sum|U?Int|Decimal|Float)", kind)]
    if view.bucket not in keys or not counters:
        return []
    for name in [*keys, *counters]:
        quote_identifier(name)
    key_list = ", ".join(keys)
    sums = ", ".join(f"toString(sum({name}))" for name in counters)
    safe = _within_ttl(source_create, view)
    over_source = _in_database(view.select, database, snapshots)
    target = f"{quote_identifier(snapshots)}.{quote_identifier(view.target)}"
    grouped = "SELECT {k}, {s} FROM {f} WHERE {w} GROUP BY {k}"
    grouped_target = grouped.format(k=key_list, s=sums, f=target, w=safe)
    grouped_source = grouped.format(k=key_list, s=sums, f=f"({over_source})", w=safe)
    # names are checked identifiers; the view's query is the schema's own
    found = rows(client, f"SELECT DISTINCT toString({view.bucket}) FROM ("  # noqa: S608
                         f"({grouped_target} EXCEPT {grouped_source}) UNION ALL "
                         f"({grouped_source} EXCEPT {grouped_target})) ORDER BY 1")
    return [str(bucket) for (bucket,) in found]


def _within_ttl(source_create: str, view: _Rollup) -> str:
    """A condition on the rollup's bucket: every source row of it is still within the
    source's TTL (one day of margin), so the source holds all of them."""
    ttl = re.search(r" TTL (.+?)(?: SETTINGS | COMMENT |$)", source_create)
    if ttl is None:
        return "1"
    quote_identifier(view.bucket)
    expression = re.sub(rf"\b{re.escape(view.bucket_of)}\b", f"toDateTime({view.bucket})",
                        ttl[1])
    return f"({expression}) > now() + toIntervalDay(1)"


def _rebuild(client: Client, database: str, snapshots: str, view: _Rollup,
             buckets: list[str]) -> None:
    """Replace ``buckets`` of the snapshot rollup by the view's query over the snapshot
    source, keeping every other row of the partitions touched as it was."""
    quoted = quote_identifier(snapshots)
    target = f"{quoted}.{quote_identifier(view.target)}"
    scratch = f"{quoted}.{quote_identifier(f'rebuild_{view.target}')}"
    columns = ", ".join(quote_identifier(name) for name, _ in
                        _columns(client, snapshots, view.target))
    chosen = {"b": buckets}
    in_buckets = f"toString({quote_identifier(view.bucket)}) IN {{b:Array(String)}}"
    command(client, f"CREATE TABLE {scratch} AS {target}")
    _hold(client, scratch)
    try:
        over_source = _in_database(view.select, database, snapshots)
        command(client, f"INSERT INTO {scratch} ({columns}) SELECT {columns}"  # noqa: S608
                        f" FROM ({over_source}) WHERE {in_buckets}", chosen, LOAD_SETTINGS)
        partitions = sorted({str(p) for (p,) in rows(
            client, f"SELECT DISTINCT _partition_id FROM {target} WHERE {in_buckets}"  # noqa: S608
                    f" UNION DISTINCT SELECT DISTINCT _partition_id FROM {scratch}", chosen)})
        for partition in partitions:
            _check_partition(partition, view.target)
        command(client, f"INSERT INTO {scratch} SELECT * FROM {target}"  # noqa: S608
                        f" WHERE _partition_id IN {{p:Array(String)}} AND NOT {in_buckets}",
                {**chosen, "p": partitions}, LOAD_SETTINGS)
        present = {str(p) for (p,) in rows(client, f"SELECT DISTINCT _partition_id"  # noqa: S608
                                                   f" FROM {scratch}")}
        for partition in partitions:
            if partition in present:
                command(client, f"ALTER TABLE {target} REPLACE PARTITION ID '{partition}'"
                                f" FROM {scratch}")
            else:
                command(client, f"ALTER TABLE {target} DROP PARTITION ID '{partition}'")
    finally:
        command(client, f"DROP TABLE IF EXISTS {scratch} SYNC")


def _hold(client: Client, table: str) -> None:
    """No merge and no TTL on ``table``: its rows stay exactly as they are loaded."""
    command(client, f"SYSTEM STOP MERGES {table}")
    command(client, f"SYSTEM STOP TTL MERGES {table}")


def _release(client: Client, table: str) -> None:
    command(client, f"SYSTEM START MERGES {table}")
    command(client, f"SYSTEM START TTL MERGES {table}")


def _zstd() -> Any:
    try:  # Python 3.14+
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:  # clickhouse-connect depends on the backport below 3.14
        from backports import zstd
    return zstd


# ------------------------------------------------------------------ restore


@dataclass
class Staged:
    """A backup loaded into a scratch database, waiting for :func:`switch`."""

    folder: Path
    manifest: Manifest
    source: str
    target: str
    scratch: str
    tables: list[str] = field(default_factory=list)
    statements: list[tuple[str, str, str]] = field(default_factory=list)
    loaded: dict[str, TableState] = field(default_factory=dict)  # each table read back


def default_jobs() -> int:
    """Tables loaded at once by a restore: the CPUs, at most :data:`MAX_JOBS`."""
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


def stage(client: Client, folder: Path, *, force: bool = False, url: str | None = None,
          jobs: int | None = None) -> Staged:
    """Load the backup in ``folder`` into a scratch database; the target is not touched.

    The tables are created one after another, then loaded ``jobs`` at a time (default
    :func:`default_jobs`), each loader on a connection of its own to ``url`` (the
    target's URL; without it, one after another on ``client``), largest first.
    """
    manifest = read_manifest(folder, STORE)
    source = str(manifest.extra.get("database", "platform"))
    target = str(client.database)
    existing = objects(client, target)
    if existing and not force:
        raise ValidationError(
            f"ClickHouse database {target} is not empty ({len(existing)} objects); restore "
            "into an empty one", hint=Hint(flag="--force", does="to replace it"))
    staged = Staged(folder, manifest, source, target, f"{target}_restore_{uuid.uuid4().hex[:8]}",
                    statements=_schema(folder))
    command(client, f"CREATE DATABASE {quote_identifier(staged.scratch)}")
    try:
        tables: list[str] = []
        for name, engine, query in staged.statements:
            if not engine.endswith("MergeTree"):
                continue
            command(client, _in_database(query, source, staged.scratch))
            table = f"{quote_identifier(staged.scratch)}.{quote_identifier(name)}"
            _hold(client, table)
            tables.append(name)
        _load_all(client, url, jobs or default_jobs(), staged, tables)
        staged.tables.extend(tables)
    except BaseException:
        discard(client, staged)
        raise
    return staged


def _load_all(client: Client, url: str | None, jobs: int, staged: Staged,
              tables: list[str]) -> None:
    """Load every table's data file, ``jobs`` at a time when ``url`` allows more clients."""
    data = staged.folder / "data"

    def qualified(name: str) -> str:
        return f"{quote_identifier(staged.scratch)}.{quote_identifier(name)}"

    def load_and_count(loader: Client, name: str) -> None:
        _load(loader, qualified(name), staged.manifest, data)
        staged.loaded[name] = table_state(loader, staged.scratch, name)  # merges are stopped

    if url is None or jobs <= 1 or len(tables) <= 1:
        for name in tables:
            load_and_count(client, name)
        return
    largest_first = sorted(tables, key=lambda name: -_data_file(staged.manifest, data, name)
                           .stat().st_size)
    with contextlib.ExitStack() as stack:
        idle: queue.SimpleQueue[Client] = queue.SimpleQueue()
        idle.put(client)
        for _ in range(min(jobs, len(tables)) - 1):
            idle.put(stack.enter_context(connect(url)))

        def load(name: str) -> None:
            loader = idle.get()
            try:
                load_and_count(loader, name)
            finally:
                idle.put(loader)

        with ThreadPoolExecutor(max_workers=min(jobs, len(tables)),
                                thread_name_prefix="platformdb-ch-restore") as pool:
            for done in [pool.submit(load, name) for name in largest_first]:
                done.result()  # the first failure leaves; the scratch database is discarded


def _data_file(manifest: Manifest, data: Path, name: str) -> Path:
    compressed = manifest.extra.get("compression") == COMPRESSION
    return data / (f"{name}.native.zst" if compressed else f"{name}.native")


def _load(client: Client, table: str, manifest: Manifest, data: Path) -> None:
    name = table.rsplit(".", 1)[1].strip("`")
    compressed = manifest.extra.get("compression") == COMPRESSION
    path = _data_file(manifest, data, name)
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as handle, translated():
        block: BinaryIO | bytes = handle if not compressed else handle.read()
        client.raw_insert(table, insert_block=block, fmt=FORMAT, settings=LOAD_SETTINGS,
                          compression=COMPRESSION if compressed else None)


def verify(client: Client, staged: Staged) -> None:
    """Raise :class:`CheckFailed` unless every staged table equals the manifest (as read
    back by the loader that loaded it)."""
    problems = _compare(staged.manifest, staged.loaded if set(staged.loaded) == set(
        staged.tables) else states(client, staged.scratch))
    if problems:
        raise CheckFailed(f"restored ClickHouse data differs from the manifest: {problems[0]}")


def discard(client: Client, staged: Staged) -> None:
    """Drop the scratch database of ``staged`` (what a failed restore leaves behind)."""
    command(client, f"DROP DATABASE IF EXISTS {quote_identifier(staged.scratch)} SYNC")


@dataclass
class Switched:
    """A switched restore: the target holds the backup; the old contents wait in scratch."""

    staged: Staged
    before: list[tuple[str, str, str]]
    exchanged: list[str] = field(default_factory=list)
    renamed_in: list[str] = field(default_factory=list)
    moved_out: list[str] = field(default_factory=list)
    tables: dict[str, TableState] = field(default_factory=dict)


def switch(client: Client, staged: Staged, *, placeholders: Placeholders = None,
           verify_after: bool = False) -> Switched:
    """Put the staged tables in the target's place; the old ones stay in scratch.

    Views and dictionaries of the target are dropped first (nothing writes into the
    tables while they move); each table is exchanged with its staged copy
    (``EXCHANGE TABLES``, atomic per table) or renamed in; the backup's views are created
    after the data and its dictionaries recreated. A failure puts everything back.
    Merges and TTL stay stopped on the restored tables until :func:`commit`.
    """
    target, scratch = quote_identifier(staged.target), quote_identifier(staged.scratch)
    before = objects(client, staged.target)
    switched = Switched(staged, before)
    present = {name for name, engine, _ in before if engine.endswith("MergeTree")}
    try:
        crash_point("clickhouse:switching")
        for name in staged.tables:
            here = f"{target}.{quote_identifier(name)}"
            there = f"{scratch}.{quote_identifier(name)}"
            if name in present:
                command(client, f"EXCHANGE TABLES {there} AND {here}")
                switched.exchanged.append(name)
            else:
                command(client, f"RENAME TABLE {there} TO {here}")
                switched.renamed_in.append(name)
            crash_point("clickhouse:first-table-in")
        for name in sorted(present - set(staged.tables)):  # not in the backup: replaced by nothing
            command(client, f"RENAME TABLE {target}.{quote_identifier(name)}"
                            f" TO {scratch}.{quote_identifier(f'old_{name}')}")
            switched.moved_out.append(name)
        _converge_views(client, staged.target, _backup_views(staged))
        _drop_derived(client, staged.target, kinds=("Dictionary",))
        _recreate_dictionaries(client, staged, placeholders)
        switched.tables = states(client, staged.target)
        if verify_after:
            problems = _compare(staged.manifest, switched.tables)
            if problems:
                raise CheckFailed(f"restored ClickHouse data differs: {problems[0]}")
    except BaseException:
        undo(client, switched)
        raise
    return switched


def _backup_views(staged: Staged) -> list[tuple[str, str, str]]:
    """The backup's views and materialized views, pointed at the target database."""
    return [(name, engine, _in_database(query, staged.source, staged.target))
            for name, engine, query in staged.statements
            if engine in ("MaterializedView", "View")]


def _converge_views(client: Client, database: str,
                    wanted: list[tuple[str, str, str]]) -> None:
    """Make the views of ``database`` exactly ``wanted`` (name, engine, create query),
    touching only those that differ: a view the backup defines as the target has it is
    never dropped, so a materialized view keeps feeding its rollup while the tables
    under it are exchanged (a view follows its tables by name). Created after the data:
    rollups are not recounted."""
    have = {name: query for name, engine, query in objects(client, database)
            if engine in ("MaterializedView", "View")}
    keep = {name for name, _engine, query in wanted if have.get(name) == query}
    for name in sorted(set(have) - keep):
        command(client, f"DROP VIEW IF EXISTS {quote_identifier(database)}."
                        f"{quote_identifier(name)} SYNC")
    for name, _engine, query in wanted:
        if name not in keep:
            command(client, query)


def undo(client: Client, switched: Switched) -> None:
    """After :func:`switch`: put the target's old tables, views and dictionaries back."""
    staged = switched.staged
    target, scratch = quote_identifier(staged.target), quote_identifier(staged.scratch)
    for name in reversed(switched.moved_out):
        command(client, f"RENAME TABLE {scratch}.{quote_identifier(f'old_{name}')}"
                        f" TO {target}.{quote_identifier(name)}")
    for name in reversed(switched.renamed_in):
        command(client, f"RENAME TABLE {target}.{quote_identifier(name)}"
                        f" TO {scratch}.{quote_identifier(name)}")
    for name in reversed(switched.exchanged):
        command(client, f"EXCHANGE TABLES {scratch}.{quote_identifier(name)}"
                        f" AND {target}.{quote_identifier(name)}")
    switched.moved_out, switched.renamed_in, switched.exchanged = [], [], []
    _put_back_derived(client, staged.target, switched.before)


def _put_back_derived(client: Client, database: str,
                      before: list[tuple[str, str, str]] | list[list[str]]) -> None:
    """The views and dictionaries of ``database`` as ``before`` lists them."""
    _converge_views(client, database, [(str(n), str(e), str(q)) for n, e, q in before
                                       if e in ("MaterializedView", "View")])
    _drop_derived(client, database, kinds=("Dictionary",))
    for _name, engine, query in before:
        if engine == "Dictionary":
            command(client, str(query))


def commit(client: Client, switched: Switched) -> dict[str, TableState]:
    """After :func:`switch`: start merges and TTL on the restored tables, drop the old ones."""
    target = quote_identifier(switched.staged.target)
    for name in switched.staged.tables:  # from now on merges fold rollups and the TTL expires rows
        _release(client, f"{target}.{quote_identifier(name)}")
    discard(client, switched.staged)
    return switched.tables


def journal_record(client: Client, staged: Staged) -> dict[str, Any]:
    """What a recovery needs to finish or undo this restore: the scratch database, the
    identity (UUID) of each staged table -- after a kill, a table of the target whose
    UUID is a staged one was switched in -- and the target's views and dictionaries as
    they are (to put them back)."""
    return {"target": staged.target, "scratch": staged.scratch,
            "folder": str(staged.folder.resolve()), "tables": _uuids(client, staged.scratch),
            "before": [[n, e, q] for n, e, q in objects(client, staged.target)
                       if e in ("MaterializedView", "View", "Dictionary")],
            "names": [staged.scratch]}


def _uuids(client: Client, database: str) -> dict[str, str]:
    return {str(name): str(ident) for name, ident in rows(
        client, "SELECT name, toString(uuid) FROM system.tables WHERE database = {d:String}"
                " AND engine LIKE '%MergeTree'", {"d": database})}


def recover(client: Client, record: dict[str, Any], *, forward: bool,
            placeholders: Placeholders = None) -> str:
    """Finish (``forward``) or roll back the restore ``record`` describes, from whatever
    state a killed process left: each table's UUID says on which side it is."""
    target, scratch = str(record["target"]), str(record["scratch"])
    if not rows(client, "SELECT count() FROM system.databases WHERE name = {d:String}",
                {"d": scratch})[0][0]:
        return "nothing to do"  # dropped: staged never, or committed already
    staged_ids: dict[str, str] = dict(record.get("tables") or {})
    switching = record.get("phase") in ("switching", "switched")
    if forward:
        folder = Path(str(record["folder"]))
        manifest = read_manifest(folder, STORE)
        staged = Staged(folder, manifest, str(manifest.extra.get("database", "platform")),
                        target, scratch, tables=sorted(staged_ids), statements=_schema(folder))
        _move_tables(client, staged_ids, target, scratch, inward=True)
        _converge_views(client, target, _backup_views(staged))
        _drop_derived(client, target, kinds=("Dictionary",))
        _recreate_dictionaries(client, staged, placeholders)
        for name in staged.tables:
            _release(client, f"{quote_identifier(target)}.{quote_identifier(name)}")
        command(client, f"DROP DATABASE IF EXISTS {quote_identifier(scratch)} SYNC")
        return "switched in"
    if switching:
        _move_tables(client, staged_ids, target, scratch, inward=False)
        _put_back_derived(client, target, record.get("before") or [])
    command(client, f"DROP DATABASE IF EXISTS {quote_identifier(scratch)} SYNC")
    return "previous contents put back" if switching else "staged copy dropped"


def _move_tables(client: Client, staged_ids: dict[str, str], target: str, scratch: str, *,
                 inward: bool) -> None:
    """Put every staged table in the target (``inward``) or back in scratch, whichever
    side each is on now; the target's own tables the other way. Views stay (they follow
    their tables by name) and are made right after."""
    here, there = _uuids(client, target), _uuids(client, scratch)
    qt, qs = quote_identifier(target), quote_identifier(scratch)
    for name, ident in sorted(staged_ids.items()):
        inside = here.get(name) == ident
        if inside == inward:
            continue
        source, dest = (f"{qs}.{quote_identifier(name)}", f"{qt}.{quote_identifier(name)}")
        if not inward:
            source, dest = dest, source
        if name in here and name in there:
            command(client, f"EXCHANGE TABLES {source} AND {dest}")
        else:
            command(client, f"RENAME TABLE {source} TO {dest}")
    if inward:  # the target's tables the backup does not hold wait in scratch as old_<name>
        for name in sorted(set(here) - set(staged_ids)):
            command(client, f"RENAME TABLE {qt}.{quote_identifier(name)}"
                            f" TO {qs}.{quote_identifier(f'old_{name}')}")
        return
    for name in sorted(there):
        if name.startswith("old_") and name not in staged_ids:
            command(client, f"RENAME TABLE {qs}.{quote_identifier(name)}"
                            f" TO {qt}.{quote_identifier(name.removeprefix('old_'))}")


LEFTOVER = r"_restore_[0-9a-f]{8}$"


def leftovers(client: Client) -> list[str]:
    """Scratch databases of restores (``<database>_restore_<hex>``)."""
    return [str(name) for (name,) in rows(
        client, "SELECT name FROM system.databases WHERE match(name, {p:String}) ORDER BY name",
        {"p": LEFTOVER})]


def drop_leftovers(client: Client, names: list[str]) -> None:
    for name in names:
        if re.search(LEFTOVER, name):
            command(client, f"DROP DATABASE IF EXISTS {quote_identifier(name)} SYNC")


def _drop_derived(client: Client, database: str,
                  kinds: tuple[str, ...] = ("MaterializedView", "Dictionary", "View")) -> None:
    for name, engine, _ in objects(client, database):
        if engine in kinds:
            kind = "DICTIONARY" if engine == "Dictionary" else "VIEW"
            command(client, f"DROP {kind} IF EXISTS {quote_identifier(database)}."
                            f"{quote_identifier(name)} SYNC")


def restore(url: str, folder: Path, *, force: bool = False, verify_after: bool = False,
            placeholders: Placeholders = None, jobs: int | None = None) -> Restored:
    """Stage, verify, switch and commit: the backup in ``folder`` replaces the database
    (``jobs`` tables loaded at once; default :func:`default_jobs`)."""
    staged = StagedRestore(url, folder, force=force, verify_after=verify_after,
                           placeholders=placeholders, jobs=jobs)
    try:
        staged.switch()
    except BaseException:
        staged.discard()
        raise
    staged.commit()
    return staged.report


class StagedRestore:
    """A ClickHouse restore staged and verified beside its target, holding its connection.

    ``switch()`` puts it in place, ``undo()`` puts the old contents back, ``commit()``
    makes it final, ``discard()`` (before a switch) drops it; the connection closes with
    ``commit()`` or ``discard()``. This is the shape ``restore all`` drives: stage every
    store, then switch them all.
    """

    def __init__(self, url: str, folder: Path, *, force: bool = False,
                 verify_after: bool = False, placeholders: Placeholders = None,
                 jobs: int | None = None) -> None:
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(connect(url))
        self.placeholders = placeholders
        self.verify_after = verify_after
        try:
            self.staged = stage(self.client, folder, force=force, url=url, jobs=jobs)
            verify(self.client, self.staged)
        except BaseException:
            self._stack.close()
            raise
        self.switched: Switched | None = None
        self.report = Restored(STORE, f"{redact(url)}#{self.staged.target}",
                               _expected(self.staged.manifest), [])

    def journal_record(self) -> dict[str, Any]:
        return journal_record(self.client, self.staged)

    def switch(self) -> None:
        self.switched = switch(self.client, self.staged, placeholders=self.placeholders,
                               verify_after=self.verify_after)

    def undo(self) -> None:
        if self.switched is not None:
            undo(self.client, self.switched)
            self.switched = None

    def commit(self) -> None:
        try:
            if self.switched is not None:
                tables = commit(self.client, self.switched)
                self.report = Restored(self.report.store, self.report.target, tables, [])
        finally:
            self._stack.close()

    def discard(self) -> None:
        try:
            if self.switched is not None:
                self.undo()
            discard(self.client, self.staged)
        finally:
            self._stack.close()


def _expected(manifest: Manifest) -> dict[str, TableState]:
    return dict(manifest.tables)


def _in_database(query: str, source: str, target: str) -> str:
    """``query`` with ``source.`` object prefixes pointed at ``target``."""
    return re.sub(rf"(?<![\w.`]){re.escape(source)}\.", f"{target}.", query.replace(
        f"`{source}`.", f"{target}."))


def _schema(folder: Path) -> list[tuple[str, str, str]]:
    """(name, engine, create query) from the backup's schema.sql."""
    schema = (folder / "schema.sql").read_text()
    return [(n, e, q) for n, e, q in
            re.findall(r"^-- (\S+) \((\w+)\)\n(.*?);\n\n", schema, re.S | re.M)]


def _recreate_dictionaries(client: Client, staged: Staged, placeholders: Placeholders) -> None:
    """Dictionaries as backed up; one whose dump hides a secret comes from its migration."""
    wanted = [(name, query) for name, engine, query in staged.statements if engine == "Dictionary"]
    if not wanted:
        return
    from_migrations: dict[str, str] | None = None
    # a dictionary reads PostgreSQL through its database's named collection: restored into
    # another database, it uses that database's collection; on a machine that has none
    # (a restore into an empty one) it is made from the dictionaries' login first
    source_collection, target_collection = (collection_name(staged.source),
                                            collection_name(staged.target))
    has_target_collection = _ensure_collection(
        client, staged.target, any(_COLLECTION.search(q) for _, q in wanted), placeholders)
    for name, query in wanted:
        if "[HIDDEN]" not in query:
            if has_target_collection:
                query = re.sub(rf"\bNAME {source_collection}\b", f"NAME {target_collection}",
                               query)
            command(client, _in_database(query, staged.source, staged.target))
            continue
        if from_migrations is None:
            from_migrations = _migration_dictionaries(staged.manifest, placeholders)
        statement = from_migrations.get(name)
        if statement is None:
            raise ValidationError(f"dictionary {name} hides its credentials in the backup and "
                                  "no applied migration defines it")
        command(client, _qualified_create(statement, staged.target))


_COLLECTION = re.compile(r"\bSOURCE\s*\(\s*POSTGRESQL\s*\(\s*NAME\s+(\w+)", re.I)


def _collections(statements: list[tuple[str, str, str]]) -> list[str]:
    """The named collections the dictionaries of a schema read through."""
    return sorted({match[1] for _, engine, query in statements if engine == "Dictionary"
                   for match in _COLLECTION.finditer(query)})


def _ensure_collection(client: Client, database: str, needed: bool,
                       placeholders: Placeholders) -> bool:
    """Whether ``database``'s named collection exists, creating it when the dictionaries
    need one and the dictionaries' login is known (from ``placeholders``'s ``pg_*``)."""
    name = collection_name(database)
    if rows(client, "SELECT count() FROM system.named_collections WHERE name = {n:String}",
            {"n": name})[0][0]:
        return True
    values = dict(placeholders() if callable(placeholders) else placeholders or {})
    if not needed or not values.get("pg_user"):
        return False
    password = re.sub(r"\\(.)", r"\1", values.get("pg_password", ""))  # a SQL literal's text
    login = (f"postgresql://{quote(values['pg_user'], safe='')}:{quote(password, safe='')}"
             f"@{values.get('pg_host', '127.0.0.1')}:{values.get('pg_port', '5432')}"
             f"/{quote(values.get('pg_db', 'postgres'), safe='')}")
    assert str(client.database) == database  # ensure_collection names it after the client's
    ensure_collection(client, login)
    return True


_CREATE_DICTIONARY = re.compile(r"^\s*CREATE\s+DICTIONARY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


def _migration_dictionaries(manifest: Manifest, placeholders: Placeholders) -> dict[str, str]:
    """The last CREATE DICTIONARY of each name among the backup's applied migrations."""
    values = dict(placeholders() if callable(placeholders) else placeholders or {})
    applied = set(manifest.migrations)
    found: dict[str, str] = {}
    for migration in discover(migrations_dir("clickhouse")):
        if migration.label not in applied:
            continue
        for statement in render(migration.sql, Topology.single(), values):
            match = _CREATE_DICTIONARY.match(statement.text)
            if match:
                found[match[1]] = statement.text
    return found


def _qualified_create(statement: str, database: str) -> str:
    match = _CREATE_DICTIONARY.match(statement)
    assert match is not None
    return (statement[:match.start(1)] + f"{quote_identifier(database)}."
            + statement[match.start(1):])


def _compare(manifest: Manifest, restored: dict[str, TableState]) -> list[str]:
    return [f"{table}: expected {state.rows} rows (checksum {state.checksum}), found "
            f"{restored[table].rows if table in restored else 'no table'}"
            + (f" (checksum {restored[table].checksum})" if table in restored else "")
            for table, state in manifest.tables.items() if restored.get(table) != state]

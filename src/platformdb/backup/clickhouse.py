"""ClickHouse backups: every table in ClickHouse's Native format, plus DDL and a manifest.

The same logical format on chDB and on a server (``BACKUP ... TO Disk`` needs
a backup disk configured on the server; this works against any server the
URL reaches, and on chDB). A folder holds ``schema.sql`` (the CREATE
statements, for reading), ``data/<table>.native`` per MergeTree table
(including the migration ledger) and ``manifest.json`` with row counts and
checksums.

Restore loads every table into a scratch database and checks it against the
manifest; only then is the target replaced: the tables are moved in (RENAME
TABLE), the materialized views created after the data (so the rollups are not
counted a second time), and the dictionaries recreated from the applied
migrations (their PostgreSQL password is never in a dump). A restore that
fails before the swap leaves the target as it was.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from platformdb.backup import Restored
from platformdb.backup.manifest import (
    Manifest,
    TableState,
    backup_folder,
    new_manifest,
    read_manifest,
)
from platformdb.clickhouse import ClickHouse, connect, quote_identifier
from platformdb.config import Settings
from platformdb.errors import CheckFailed, StoreUnavailable, ValidationError
from platformdb.migrate.clickhouse import LEDGER, LOCK_TABLE

STORE = "clickhouse"
FORMAT = "Native"


def objects(client: ClickHouse, database: str) -> list[tuple[str, str, str]]:
    """(name, engine, create query) of the database, tables before views."""
    rows = client.rows(
        "SELECT name, engine, create_table_query FROM system.tables"
        " WHERE database = {db:String} AND name != {lock:String} AND NOT is_temporary"
        " ORDER BY engine = 'MaterializedView', engine = 'Dictionary', name",
        {"db": database, "lock": LOCK_TABLE})
    return [(str(n), str(e), str(q)) for n, e, q in rows]


def table_state(client: ClickHouse, database: str, table: str) -> TableState:
    columns = [str(name) for (name,) in client.rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " AND type NOT LIKE 'AggregateFunction%' ORDER BY position",
        {"db": database, "t": table})]
    hashed = ", ".join(quote_identifier(c) for c in columns)
    row = client.rows(
        f"SELECT count(), toString(sum(cityHash64({hashed})))"
        f" FROM {quote_identifier(database)}.{quote_identifier(table)}")[0]
    return TableState(rows=int(row[0]), checksum=str(row[1]))


def states(client: ClickHouse, database: str) -> dict[str, TableState]:
    return {name: table_state(client, database, name)
            for name, engine, _ in objects(client, database) if engine.endswith("MergeTree")}


def backup(settings: Settings, out_dir: Path) -> Path:
    folder = backup_folder(out_dir, STORE)
    (folder / "data").mkdir()
    with connect(settings) as client:
        database = client.database
        found = objects(client, database)
        (folder / "schema.sql").write_text(
            "".join(f"-- {name} ({engine})\n{query};\n\n" for name, engine, query in found))
        tables: dict[str, TableState] = {}
        for name, engine, _ in found:
            if not engine.endswith("MergeTree"):
                continue
            tables[name] = table_state(client, database, name)
            data = client.query_bytes(
                f"SELECT * FROM {quote_identifier(database)}.{quote_identifier(name)}", FORMAT)
            (folder / "data" / f"{name}.native").write_bytes(data)
        version = str(client.rows("SELECT version()")[0][0])
        labels = [f"{int(v):03d}_{n}" for v, n in client.rows(
            f"SELECT version, name FROM {LEDGER} ORDER BY version")] \
            if LEDGER in tables else []
    manifest = new_manifest(
        STORE, tools={"clickhouse": version}, schema_version=len(labels) or None,
        migrations=labels, tables=tables,
        extra={"database": database, "format": FORMAT,
               "objects": [[name, engine] for name, engine, _ in found]})
    manifest.write(folder)
    return folder


def _in_database(query: str, source: str, target: str) -> str:
    """``query`` with ``source.`` object prefixes pointed at ``target``."""
    return re.sub(rf"(?<![\w.`]){re.escape(source)}\.", f"{target}.", query.replace(
        f"`{source}`.", f"{target}."))


def restore(settings: Settings, folder: Path, *, force: bool = False,
            verify: bool = False) -> Restored:
    manifest = read_manifest(folder, STORE)
    source = str(manifest.extra.get("database", "platform"))
    with connect(settings) as client:
        target = client.database
        existing = objects(client, target)
        if existing and not force:
            raise ValidationError(
                f"ClickHouse database {target} is not empty ({len(existing)} objects); restore "
                "into an empty one or pass --force to replace it")
        scratch = f"{target}_restore_{uuid.uuid4().hex[:8]}"
        client.command(f"CREATE DATABASE {quote_identifier(scratch)}")
        statements = _schema(folder)
        try:
            loaded = _load_tables(client, folder, statements, source, scratch)
            mismatches = _compare(manifest, states(client, scratch))
            if mismatches:
                raise CheckFailed(f"restored ClickHouse data differs from the manifest: "
                                  f"{mismatches[0]}")
            # the data is in and checked: only now is the target replaced
            client.command(f"DROP DATABASE IF EXISTS {quote_identifier(target)} SYNC")
            client.command(f"CREATE DATABASE {quote_identifier(target)}")
            for name in loaded:
                client.command(f"RENAME TABLE {quote_identifier(scratch)}.{quote_identifier(name)}"
                               f" TO {quote_identifier(target)}.{quote_identifier(name)}")
            for _name, engine, query in statements:
                if engine == "MaterializedView":  # after the data: rollups are not recounted
                    client.command(_in_database(query, source, target))
            _recreate_dictionaries(client, manifest, target, settings)
        finally:
            client.command(f"DROP DATABASE IF EXISTS {quote_identifier(scratch)} SYNC")
        if verify:
            after = states(client, target)
            problems = _compare(manifest, after)
            if problems:
                raise CheckFailed(f"restored ClickHouse data differs: {problems[0]}")
        return Restored(STORE, f"{client.target}/{target}", states(client, target), [])


def _schema(folder: Path) -> list[tuple[str, str, str]]:
    """(name, engine, create query) from the backup's schema.sql."""
    schema = (folder / "schema.sql").read_text()
    return [(n, e, q) for n, e, q in
            re.findall(r"^-- (\S+) \((\w+)\)\n(.*?);\n\n", schema, re.S | re.M)]


def _load_tables(client: ClickHouse, folder: Path, statements: list[tuple[str, str, str]],
                 source: str, scratch: str) -> list[str]:
    """Create the MergeTree tables in ``scratch`` and load their data; return their names."""
    loaded: list[str] = []
    for name, engine, query in statements:
        if not engine.endswith("MergeTree"):
            continue
        client.command(_in_database(query, source, scratch))
        data = (folder / "data" / f"{name}.native").read_bytes()
        if data:
            client.insert_bytes(f"{quote_identifier(scratch)}.{quote_identifier(name)}",
                                data, FORMAT)
        loaded.append(name)
    return loaded


def _recreate_dictionaries(client: ClickHouse, manifest: Manifest, scratch: str,
                           settings: Settings) -> None:
    """Dictionaries come from the applied migrations: a dump hides their password."""
    from platformdb.migrate import discover, migrations_dir
    from platformdb.migrate.clickhouse import ClickHouseDriver, postgres_placeholders

    applied = set(manifest.migrations)
    if settings.postgres_url is None:
        raise StoreUnavailable("restoring the ClickHouse dictionaries needs the PostgreSQL URL")
    driver = ClickHouseDriver(client, postgres_placeholders(settings.postgres_url),
                              own_client=False)
    for migration in discover(migrations_dir("clickhouse")):
        if migration.label not in applied:
            continue
        for sql in driver.statements(migration.sql):
            match = re.match(r"\s*CREATE\s+DICTIONARY\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)", sql, re.I)
            if match:
                # lint: allow sql-injection the repository's own migration DDL, database-qualified
                client.command(sql[:match.start(2)] + f"{quote_identifier(scratch)}."
                               + sql[match.start(2):])


def _compare(manifest: Manifest, restored: dict[str, TableState]) -> list[str]:
    return [f"{table}: expected {state.rows} rows (checksum {state.checksum}), found "
            f"{restored[table].rows if table in restored else 'no table'}"
            for table, state in manifest.tables.items() if restored.get(table) != state]

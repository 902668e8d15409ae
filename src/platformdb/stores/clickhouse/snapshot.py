"""A ClickHouse schema as a :data:`~platformdb.migrate.snapshot.Snapshot`, from system tables.

Covered, for the target database: tables (engine with its arguments, ORDER
BY, PARTITION BY, PRIMARY KEY, SAMPLE BY, TTL, settings), columns (type,
default, codec, comment, position), views and materialized views (query,
target table), dictionaries (structure, source, layout, lifetime) and
Distributed tables (what they point at). The engine's own tables
(``platformdb_*``) and the inner tables of materialized views are left out.

Normalised: the database's name (``db.table`` is ``table``); the named
collection a dictionary reads (``platformdb_dictionaries_<db>``) and a
PostgreSQL source's host, port, user, password and database (written into
003's dictionaries at apply time from the dictionaries' login) are where the
dictionary reads from, not its definition; settings are sorted
(``ALTER ... MODIFY SETTING`` appends).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from platformdb.migrate.snapshot import Snapshot

Rows = Callable[[str, dict[str, Any] | None], list[tuple[Any, ...]]]

_SETTINGS = re.compile(r"\sSETTINGS\s+(?P<settings>.*)$", re.S)
_TTL = re.compile(r"\sTTL\s+(?P<ttl>.*?)(?=\sSETTINGS\s|$)", re.S)
_SOURCE_VALUES = re.compile(r"\b(?P<key>HOST|PORT|USER|PASSWORD|DB)\s+(?:'(?:[^'\\]|\\.)*'|\d+)",
                            re.I)
_COLLECTION = re.compile(r"\bNAME\s+platformdb_dictionaries_\w+")
_MV_TARGET = re.compile(r"\bTO\s+(?:`?\w+`?\.)?`?(?P<target>\w+)`?", re.I)


def _strip_database(text: str, database: str) -> str:
    return re.sub(rf"(?<![\w.]){re.escape(database)}\.", "", text).replace(
        f"`{database}`.", "")


def _settings(engine_full: str) -> str:
    found = _SETTINGS.search(engine_full)
    if found is None:
        return ""
    return ", ".join(sorted(s.strip() for s in found["settings"].split(",")))


def _ttl(engine_full: str) -> str:
    found = _TTL.search(engine_full)
    return found["ttl"].strip() if found else ""


def dictionary_source(create: str) -> str:
    """A dictionary's DDL with where it reads from replaced by placeholders."""
    text = _COLLECTION.sub("NAME platformdb_dictionaries_{database}", create)
    return _SOURCE_VALUES.sub(lambda m: f"{m['key'].upper()} '...'", text)


def snapshot(rows: Rows, skip: tuple[str, ...] = ()) -> Snapshot:
    """The schema of the current database, through ``rows(sql, parameters)``."""
    found: Snapshot = {}
    database = str(rows("SELECT currentDatabase()", None)[0][0])
    tables = rows(
        "SELECT name, engine, engine_full, create_table_query, sorting_key, partition_key,"
        " primary_key, sampling_key, as_select, comment FROM system.tables"
        " WHERE database = currentDatabase() AND NOT is_temporary"
        " AND name NOT LIKE 'platformdb\\_%' AND name NOT LIKE '.inner%'", None)
    kept: set[str] = set()
    for (name, engine, engine_full, create, sorting, partition, primary, sampling, select,
         comment) in tables:
        if name in skip:
            continue
        kept.add(str(name))
        create = _strip_database(str(create), database)
        engine_full = _strip_database(str(engine_full), database)
        attributes: dict[str, str] = {"engine": str(engine), "comment": str(comment or "")}
        if engine == "MaterializedView":
            target = _MV_TARGET.search(create.split(" AS ", 1)[0])
            attributes["to"] = target["target"] if target else ""
            attributes["query"] = _strip_database(str(select), database)
        elif engine == "View":
            attributes["query"] = _strip_database(str(select), database)
        elif engine == "Dictionary":
            attributes["definition"] = dictionary_source(create)
        elif engine == "Distributed":  # Distributed('cluster', db, table_local, key)
            attributes["engine"] = re.sub(rf"\b{re.escape(database)}\b", "{database}",
                                          engine_full)
        else:
            head = engine_full.split(" PARTITION BY ")[0].split(" ORDER BY ")[0]
            attributes.update({
                "engine": _SETTINGS.sub("", _TTL.sub("", head)).strip(),
                "order by": str(sorting), "partition by": str(partition),
                "primary key": str(primary), "sample by": str(sampling),
                "ttl": _ttl(engine_full), "settings": _settings(engine_full)})
        kind = {"MaterializedView": "materialized view", "View": "view",
                "Dictionary": "dictionary"}.get(str(engine), "table")
        found[f"{kind} {name}"] = attributes
        if kind != "table":  # a view's columns are its query's; a dictionary's, its DDL's
            kept.discard(str(name))
    for table, column, kind, default_kind, default, codec, comment, position in rows(
            "SELECT table, name, type, default_kind, default_expression, compression_codec,"
            " comment, position FROM system.columns WHERE database = currentDatabase()", None):
        if table not in kept:
            continue
        found[f"column {table}.{column}"] = {
            "type": str(kind), "default": f"{default_kind} {default}".strip(),
            "codec": str(codec), "comment": str(comment), "position": str(position)}
    return found

"""The one way into ClickHouse: chDB in-process, or a server over HTTP.

Both backends offer the same small surface, :class:`ClickHouse`: ``command``
for DDL and statements without results, ``rows`` for queries (values come back
as Python types: ``Decimal``, ``UUID``, ``date``, ``datetime``), and
``insert_arrow`` for columnar batches (one round trip per batch). Queries take
ClickHouse's own server-side parameters, ``{name:Type}``, on both backends;
nothing is formatted into SQL text.

chDB (the embedded default) opens one database path per process at a time:
open it with :func:`connect` in a ``with`` block and close it before another
path. Concurrent users of ClickHouse need a server
(``PLATFORMDB_CLICKHOUSE_URL=http://...``).

:func:`render_cluster` turns the single-node DDL of ``clickhouse/`` into its
cluster form (``ON CLUSTER``, Replicated engines, Distributed tables sharded
by ``org_id``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from platformdb.config import Settings, mask_password
from platformdb.errors import ConfigError, PlatformDBError, StoreUnavailable

DEFAULT_DATABASE = "platform"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = [
    "DEFAULT_DATABASE",
    "ChdbClient",
    "ClickHouse",
    "ClickHouseError",
    "ServerClient",
    "connect",
    "open_client",
    "quote_identifier",
    "render_cluster",
    "target_of",
]


class ClickHouseError(PlatformDBError):
    """A statement failed on ClickHouse."""


class ClickHouse(Protocol):
    """What every backend offers."""

    database: str
    target: str

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def insert_arrow(self, table: str, data: pa.Table) -> int: ...

    def query_bytes(self, sql: str, fmt: str) -> bytes: ...

    def insert_bytes(self, table: str, data: bytes, fmt: str) -> None: ...

    def close(self) -> None: ...


def quote_identifier(name: str) -> str:
    """A database or table name we control, checked and back-quoted."""
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"invalid ClickHouse identifier {name!r}")
    return f"`{name}`"


# ------------------------------------------------------------------- chDB


class ChdbClient:
    """chDB at a folder: in-process ClickHouse, one path per process at a time."""

    def __init__(self, path: Path, database: str = DEFAULT_DATABASE) -> None:
        import chdb.session

        quote_identifier(database)
        self.path = path
        self.database = database
        self.target = f"chdb://{path}"
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._session = chdb.session.Session(str(path))
        except Exception as exc:  # chDB raises plain exceptions
            raise StoreUnavailable(
                f"cannot open chDB at {path}: {_first_line(exc)}; a chDB path can be open in one "
                "process at a time (use a ClickHouse server for concurrent access)") from exc
        self._run(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        self._run(f"USE {quote_identifier(database)}")

    def _run(self, sql: str, fmt: str = "CSV", params: Mapping[str, Any] | None = None) -> Any:
        try:
            return self._session.query(sql, fmt, params=_escaped(_wire_params(params)))
        except Exception as exc:  # chDB raises RuntimeError with the server text
            raise ClickHouseError(_first_line(exc)) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, "CSV", params)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows as Python values, through Arrow (UUID, Decimal, date come back typed).

        On chDB's Arrow output a ``DateTime`` column arrives as epoch seconds;
        queries that need datetimes select ``DateTime64`` (as the reports do).
        """
        result = self._run(sql, "Arrow", params)
        data = result.bytes() if result is not None else b""
        if not data:
            return []
        table = pa.ipc.open_file(io.BytesIO(data)).read_all()
        columns = [column.to_pylist() for column in table.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        columns = ", ".join(quote_identifier(name) for name in data.column_names)
        try:
            with self._session.send_insert(
                    f"INSERT INTO {quote_identifier(table)} ({columns})", "ArrowStream") as insert:
                insert.append(sink.getvalue())
                insert.finish()
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc
        return int(data.num_rows)

    def query_bytes(self, sql: str, fmt: str) -> bytes:
        """The result of ``sql`` in a ClickHouse format (``Native``, ``Parquet``...)."""
        result = self._run(sql, fmt)
        return bytes(result.bytes()) if result is not None else b""

    def insert_bytes(self, table: str, data: bytes, fmt: str) -> None:
        try:
            with self._session.send_insert(f"INSERT INTO {table}", fmt) as insert:
                insert.append(data)
                insert.finish()
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc

    def close(self) -> None:
        self._session.close()


# ----------------------------------------------------------------- server


class ServerClient:
    """A ClickHouse server through clickhouse-connect (HTTP interface)."""

    def __init__(self, url: str, database: str | None = None) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.database = database or parts.path.strip("/") or DEFAULT_DATABASE
        quote_identifier(self.database)
        self.target = mask_password(url)
        try:
            bootstrap = clickhouse_connect.get_client(
                host=parts.hostname or "localhost", port=parts.port or 8123,
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                secure=parts.scheme == "https", connect_timeout=10,
                settings={k: v[0] for k, v in query.items()})
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}")
            bootstrap.close()
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost", port=parts.port or 8123,
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""), database=self.database,
                secure=parts.scheme == "https", connect_timeout=10)
        except Exception as exc:  # connect errors come in several types
            raise StoreUnavailable(
                f"cannot connect to ClickHouse at {self.target}: {_first_line(exc)}; "
                "check PLATFORMDB_CLICKHOUSE_URL") from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=_wire_params(params))
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            result = self._client.query(sql, parameters=_wire_params(params))
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc
        return [tuple(row) for row in result.result_rows]

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        try:
            self._client.insert_arrow(table, data)
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc
        return int(data.num_rows)

    def query_bytes(self, sql: str, fmt: str) -> bytes:
        try:
            return bytes(self._client.raw_query(sql, fmt=fmt))
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc

    def insert_bytes(self, table: str, data: bytes, fmt: str) -> None:
        try:
            self._client.raw_insert(table, insert_block=data, fmt=fmt)
        except Exception as exc:
            raise ClickHouseError(_first_line(exc)) from exc

    def close(self) -> None:
        self._client.close()


# ------------------------------------------------------------------ entry


def target_of(settings: Settings) -> str:
    """Where ClickHouse is for ``settings``: the server URL or the chDB path."""
    return settings.clickhouse_url or f"chdb://{Path(settings.home) / 'clickhouse'}"


def open_client(settings: Settings, database: str | None = None) -> ClickHouse:
    """An open client for ``settings``; the caller closes it (or use :func:`connect`)."""
    url = target_of(settings)
    if url.startswith("chdb://"):
        parts = urlsplit(url)
        named = parse_qs(parts.query).get("database", [DEFAULT_DATABASE])[0]
        return ChdbClient(Path(unquote(parts.path)), database or named)
    if url.startswith(("http://", "https://")):
        return ServerClient(url, database)
    raise ConfigError(f"unsupported ClickHouse URL {mask_password(url)}; "
                      "use http(s)://host:8123/db or chdb:///path")


@contextmanager
def connect(settings: Settings, database: str | None = None) -> Iterator[ClickHouse]:
    """Open ClickHouse for ``settings`` (chDB at ``$PLATFORMDB_HOME/clickhouse`` by default).

    ``chdb:///path?database=name`` and ``http://host:8123/name`` choose the database
    (``platform`` by default).
    """
    client = open_client(settings, database)
    try:
        yield client
    finally:
        client.close()


# ------------------------------------------------------------ rendering


_CREATE = re.compile(
    r"^(?P<head>\s*CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW|VIEW|DICTIONARY)\s+(?:IF\s+NOT\s+EXISTS\s+)?)"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)", re.I)
_DROP = re.compile(
    r"^(?P<head>\s*DROP\s+(?:TABLE|VIEW|DICTIONARY)\s+(?:IF\s+EXISTS\s+)?)"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)", re.I)
_ALTER = re.compile(r"^(?P<head>\s*ALTER\s+TABLE\s+)(?P<name>[A-Za-z_][A-Za-z0-9_]*)", re.I)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<kind>\w*)MergeTree(?:\((?P<args>[^()]*)\))?", re.I)
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
SHARDING_KEY = "cityHash64(org_id)"


def _statement_head(sql: str) -> str:
    """``sql`` without its leading comment lines."""
    lines = sql.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def local_tables(statements: Sequence[str]) -> set[str]:
    """Names of the MergeTree-family tables created by ``statements``."""
    names: set[str] = set()
    for sql in statements:
        body = _statement_head(sql)
        create = _CREATE.match(body)
        if create and _ENGINE.search(body) and re.match(r"\s*CREATE\s+TABLE", body, re.I):
            names.add(create["name"])
    return names


def render_cluster(sql: str, cluster: str = "{cluster}", database: str = DEFAULT_DATABASE,
                   sharded: set[str] | None = None) -> str:
    """The cluster form of one statement (possibly two statements, ``;``-separated).

    A MergeTree table ``t`` becomes ``t_local`` (Replicated, ``ON CLUSTER``)
    plus ``t``, a Distributed table over it sharded by ``cityHash64(org_id)``,
    so one tenant's rows stay on one shard. Materialized views read and write
    the ``_local`` tables of their shard; readers and writers use ``t``.
    ``sharded`` names the tables that get the local/Distributed split (by
    default: the one this statement creates, when it is a MergeTree table).
    """
    body = _statement_head(sql).strip().rstrip(";")
    # '{cluster}' (the default) is the server's macro, which only a string literal expands
    named = f"'{cluster}'" if cluster.startswith("{") else quote_identifier(cluster)
    on_cluster = f" ON CLUSTER {named}"
    local = set(sharded) if sharded is not None else local_tables([body])
    for name in sorted(local, key=len, reverse=True):
        body = re.sub(rf"\b{name}\b(?!_local)", f"{name}_local", body)
    is_table = bool(_ENGINE.search(body)) and bool(re.match(r"\s*CREATE\s+TABLE", body, re.I))
    if is_table:
        body = _ENGINE.sub(_replicated, body, count=1)
    for pattern in (_CREATE, _DROP, _ALTER):
        match = pattern.match(body)
        if match:
            body = body[:match.end()] + on_cluster + body[match.end():]
            break
    statements = [body]
    create = _CREATE.match(body)
    if is_table and create and create["name"].endswith("_local"):
        name = create["name"][: -len("_local")]
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {name}{on_cluster} AS {name}_local\n"
            f"ENGINE = Distributed({named}, "
            f"{quote_identifier(database)}, {name}_local, {SHARDING_KEY})")
    drop = _DROP.match(_statement_head(sql).strip())
    if drop and drop["name"] in local and re.match(r"\s*DROP\s+TABLE", drop.group(0), re.I):
        statements.insert(0, f"DROP TABLE IF EXISTS {drop['name']}{on_cluster}")
    return ";\n".join(statements)


def _replicated(match: re.Match[str]) -> str:
    args = (match["args"] or "").strip()
    return (f"ENGINE = Replicated{match['kind']}MergeTree("
            f"{REPLICA_PATH}{', ' + args if args else ''})")


# ---------------------------------------------------------------- values


def _wire_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {key: _wire(value) for key, value in params.items()}


def _escaped(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """chDB reads parameter values as text: strings in ClickHouse's escaped
    format, arrays as literals."""
    if params is None:
        return None
    return {key: _chdb_text(value) for key, value in params.items()}


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "'": "\\'"})


def _chdb_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"'{_chdb_text(v)}'" if isinstance(v, str) else _chdb_text(v)
                               for v in value) + "]"
    if value is None:
        return "\\N"
    return str(value).translate(_ESCAPES)


def _wire(value: Any) -> Any:
    if isinstance(value, uuid.UUID | dt.date | decimal.Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return type(exc).__name__

"""Batched, validated inserts: raw campaign metrics, user events, API logs.

Rows are gathered into columnar Arrow batches and sent as one INSERT per
batch (one round trip), never one row per insert. Each batch is validated
as a whole before it is sent: a row with an unknown org, a negative count or
a malformed timestamp rejects the batch with an error naming the row, and
nothing of that batch is written.

The columnar entry points (``write_raw_columns``) take arrays directly and
validate them with vectorised Arrow kernels (money may be given as integer
cents); the row entry points
(``write_raw``...) build those arrays from dicts or tuples.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from platformdb.clickhouse import ClickHouse
from platformdb.errors import ValidationError

DEFAULT_BATCH = 100_000
UUID_TYPE = pa.binary(16)
MONEY = pa.decimal128(15, 2)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    kind: str  # uuid | count | money | time | text | ip


RAW = (
    Column("timestamp", pa.timestamp("s", tz="UTC"), "time"),
    Column("org_id", UUID_TYPE, "uuid"),
    Column("campaign_id", UUID_TYPE, "uuid"),
    Column("dsp_type", pa.string(), "text"),
    Column("impressions", pa.uint64(), "count"),
    Column("clicks", pa.uint64(), "count"),
    Column("conversions", pa.uint64(), "count"),
    Column("spend", MONEY, "money"),
    Column("revenue", MONEY, "money"),
)
EVENTS = (
    Column("timestamp", pa.timestamp("ms", tz="UTC"), "time"),
    Column("org_id", UUID_TYPE, "uuid"),
    Column("user_id", UUID_TYPE, "uuid"),
    Column("session_id", pa.string(), "text"),
    Column("event_type", pa.string(), "text"),
    Column("resource_type", pa.string(), "text"),
    Column("resource_id", pa.string(), "text"),
    Column("properties", pa.string(), "text"),
    Column("ip", pa.string(), "ip"),
    Column("user_agent", pa.string(), "text"),
)
API_LOGS = (
    Column("timestamp", pa.timestamp("ms", tz="UTC"), "time"),
    Column("org_id", UUID_TYPE, "uuid"),
    Column("user_id", UUID_TYPE, "uuid"),
    Column("request_id", pa.string(), "text"),
    Column("method", pa.string(), "text"),
    Column("path", pa.string(), "text"),
    Column("status_code", pa.uint16(), "count"),
    Column("duration_ms", pa.uint32(), "count"),
    Column("request_bytes", pa.uint32(), "count"),
    Column("response_bytes", pa.uint32(), "count"),
    Column("dsp_type", pa.string(), "text"),
    Column("error", pa.string(), "text"),
)
TABLES: dict[str, tuple[Column, ...]] = {
    "campaign_metrics_raw": RAW, "user_events": EVENTS, "api_logs": API_LOGS,
}
NIL_UUID = uuid.UUID(int=0)


class MetricsWriter:
    """Validated, batched inserts into the raw analytics tables.

    ``known_orgs``: the tenants a row may belong to. When omitted they are
    read once from the ``organizations_dict`` dictionary (PostgreSQL's
    organizations), so a row for an org that does not exist is refused.
    """

    def __init__(self, client: ClickHouse, known_orgs: Iterable[uuid.UUID | str] | None = None,
                 batch_size: int = DEFAULT_BATCH) -> None:
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1")
        self.client = client
        self.batch_size = batch_size
        self._orgs: pa.Array | None = None
        if known_orgs is not None:
            self._orgs = pa.array([_uuid(o, "org_id", i).bytes for i, o in enumerate(known_orgs)],
                                  UUID_TYPE)

    # ------------------------------------------------------------ rows

    def write_raw(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        """Raw campaign metrics; returns the rows written."""
        return self._write_rows("campaign_metrics_raw", rows)

    def write_events(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        return self._write_rows("user_events", rows)

    def write_api_logs(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        return self._write_rows("api_logs", rows)

    def _write_rows(self, table: str, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        columns = TABLES[table]
        written, offset = 0, 0
        batch: list[Mapping[str, Any] | Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.batch_size:
                written += self._send(table, _to_arrow(columns, batch, offset))
                offset += len(batch)
                batch = []
        if batch:
            written += self._send(table, _to_arrow(columns, batch, offset))
        return written

    # --------------------------------------------------------- columns

    def write_raw_columns(self, data: pa.Table | Mapping[str, Any]) -> int:
        """Raw metrics already in columns (Arrow arrays or Python lists), one INSERT."""
        table = data if isinstance(data, pa.Table) else pa.table(dict(data))
        return self._send("campaign_metrics_raw", _conform(RAW, table))

    # ------------------------------------------------------------ send

    def _send(self, table: str, data: pa.Table) -> int:
        self._validate(table, data)
        if data.num_rows == 0:
            return 0
        return self.client.insert_arrow(table, data)

    def _validate(self, table: str, data: pa.Table) -> None:
        for column in TABLES[table]:
            values = data.column(column.name)
            if values.null_count:
                bad = _first(pc.is_null(values))
                raise ValidationError(f"{table} row {bad}: {column.name} is missing")
        known = self.known_orgs()
        orgs = data.column("org_id")
        unknown = pc.invert(pc.is_in(orgs, value_set=known))
        if pc.any(unknown).as_py():
            bad = _first(unknown)
            org = uuid.UUID(bytes=orgs[bad].as_py())
            raise ValidationError(f"{table} row {bad}: unknown org_id {org}; nothing of this "
                                  "batch was written")

    def known_orgs(self) -> pa.Array:
        if self._orgs is None:
            ids = [row[0] for row in self.client.rows("SELECT id FROM organizations_dict")]
            self._orgs = pa.array([i.bytes for i in ids], UUID_TYPE)
        return self._orgs


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    index = pc.index(mask, True).as_py()
    return int(index)


def _conform(columns: Sequence[Column], table: pa.Table) -> pa.Table:
    """``table`` with exactly ``columns``, cast to their types; errors name the column."""
    missing = [c.name for c in columns if c.name not in table.column_names]
    if missing:
        raise ValidationError(f"missing column(s): {', '.join(missing)}")
    arrays = []
    for column in columns:
        values = table.column(column.name)
        if column.kind in ("count", "money"):
            negative = pc.less(values, 0)
            if pc.any(negative).as_py():
                raise ValidationError(
                    f"row {_first(negative)}: {column.name} must not be negative")
        if column.kind == "money" and pa.types.is_integer(values.type):
            arrays.append(cents_to_money(values))
            continue
        try:
            arrays.append(values.cast(column.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValidationError(f"{column.name}: {exc}") from exc
    return pa.table(arrays, names=[c.name for c in columns])


def cents_to_money(cents: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Integer cents as Decimal(15, 2), exactly and without a Python loop.

    A Decimal128 value is its unscaled integer in 16 little-endian bytes, so
    cents (scale 2) only need sign-extending to 128 bits.
    """
    values = np.asarray(cents.to_numpy(zero_copy_only=False), dtype=np.int64)
    if values.size and (values.max() >= 10**15 or values.min() <= -(10**15)):
        raise ValidationError("an amount exceeds Decimal(15, 2)")
    words = np.empty((values.size, 2), dtype=np.int64)
    words[:, 0] = values
    words[:, 1] = np.where(values < 0, -1, 0)
    return pa.Array.from_buffers(MONEY, values.size, [None, pa.py_buffer(words.tobytes())])


def _to_arrow(columns: Sequence[Column], rows: Sequence[Mapping[str, Any] | Sequence[Any]],
              offset: int) -> pa.Table:
    values: dict[str, list[Any]] = {c.name: [] for c in columns}
    for index, row in enumerate(rows, start=offset):
        if isinstance(row, Mapping):
            unknown = set(row) - set(values)
            if unknown:
                raise ValidationError(f"row {index}: unknown field(s) {', '.join(sorted(unknown))}")
            items = [(c, row.get(c.name)) for c in columns]
        else:
            if len(row) != len(columns):
                raise ValidationError(f"row {index}: expected {len(columns)} values, "
                                      f"got {len(row)}")
            items = list(zip(columns, row, strict=True))
        for column, value in items:
            values[column.name].append(_value(column, value, index))
    return pa.table([pa.array(values[c.name], c.type) for c in columns],
                    names=[c.name for c in columns])


def _value(column: Column, value: Any, row: int) -> Any:
    if column.kind == "uuid":
        if value is None and column.name == "user_id":
            return NIL_UUID.bytes
        return _uuid(value, column.name, row).bytes
    if column.kind == "time":
        return _timestamp(value, column.name, row)
    if column.kind == "count":
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(
                f"row {row}: {column.name} must be a non-negative integer, got {value!r}")
        return value
    if column.kind == "money":
        return _money(value, column.name, row)
    if column.kind == "ip":
        if value in (None, ""):
            return "::"
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValidationError(
                f"row {row}: {column.name} {value!r} is not an IP address") from exc
    return "" if value is None else str(value)


def _uuid(value: Any, name: str, row: int) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ValidationError(f"row {row}: {name} {value!r} is not a UUID") from exc


def _timestamp(value: Any, name: str, row: int) -> dt.datetime:
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"row {row}: {name} {value!r} is not a timestamp") from exc
    else:
        raise ValidationError(f"row {row}: {name} {value!r} is not a timestamp")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    if not dt.datetime(1970, 1, 1, tzinfo=dt.UTC) <= stamp < dt.datetime(2106, 1, 1, tzinfo=dt.UTC):
        raise ValidationError(f"row {row}: {name} {value!r} is outside ClickHouse's DateTime range")
    return stamp


def _money(value: Any, name: str, row: int) -> decimal.Decimal:
    if value is None:
        value = 0
    try:
        amount = decimal.Decimal(str(value)) if not isinstance(value, decimal.Decimal) else value
    except decimal.InvalidOperation as exc:
        raise ValidationError(f"row {row}: {name} {value!r} is not an amount") from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationError(f"row {row}: {name} must be a non-negative amount, got {value!r}")
    if amount != amount.quantize(decimal.Decimal("0.01")):
        raise ValidationError(f"row {row}: {name} {value!r} has more than 2 decimals")
    if amount >= decimal.Decimal("1e13"):
        raise ValidationError(f"row {row}: {name} {value!r} exceeds Decimal(15, 2)")
    return amount

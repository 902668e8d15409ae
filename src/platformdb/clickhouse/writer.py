"""Batched, validated, idempotent inserts: raw campaign metrics, user events, API logs.

Rows are gathered into batches and sent as one INSERT per batch (one round
trip), never one row per insert. Each batch is validated as a whole before it
is sent: a row with an unknown org, a missing or negative value, a count or
amount out of range, money with more than two decimals, a malformed
timestamp rejects the batch with an error naming the row, and nothing of that
batch is written.

**A write either raises or is complete.** Each batch is one INSERT that
raises when anything fails while it is written, materialized views included
(:class:`WriteFailed`, with the rows of the batches before it that were
written). ClickHouse cannot take back a part already written to the raw
table when a view fails, so the batch may be half in: retry it.

**Retries never double count.** Every batch carries an
``insert_deduplication_token``: ``<token>:<batch number>``. The raw tables keep
the tokens of their last :data:`DEDUP_WINDOW` blocks
(``non_replicated_deduplication_window``, migration 004) and the rollups
deduplicate the blocks derived from them
(``deduplicate_blocks_in_dependent_materialized_views``), so writing the same
rows again with the same token adds nothing to raw, hourly or daily, and
completes whatever a failed attempt left out. Choose the token from what
identifies the data at its source, e.g. ``f"dv360:{report_id}"`` for a DSP
report (the writer numbers its batches; a retry must send the same rows in
the same order with the same ``batch_size``). Without a token each call gets
a fresh one (:attr:`WriteFailed.token` says which, for a retry).

The row entry points (``write_raw``...) need nothing beyond clickhouse-connect.
``write_raw_columns`` is the fast path for bulk loads: columns as Arrow
arrays (pyarrow imported when it is called), money as Decimal or integer
cents, validated with vectorised kernels.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver import exceptions as cc_errors

from platformdb.clickhouse import ClickHouseError, one_line, translated
from platformdb.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
    from clickhouse_connect.driver import Client

DEFAULT_BATCH = 100_000
DEDUP_WINDOW = 10_000
MAX_COUNT = 2**32 - 1
"""Largest impressions/clicks/conversions of one raw row.

With it, an hourly or daily rollup row (UInt64, and PostgreSQL's bigint)
overflows only after 2^31 raw rows at the maximum for one campaign, DSP and
day, far beyond any import.
"""
MONEY_PRECISION = 15
MAX_MONEY = decimal.Decimal("9999999999999.99")
"""Largest spend/revenue of one raw row (``Decimal(15, 2)``); rollups are
``Decimal(38, 2)``, which 10^23 such rows would not fill."""
CENT = decimal.Decimal("0.01")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # ClickHouse type
    kind: str  # uuid | count | money | time | text | ip
    maximum: int = 0  # counts
    required: bool = True  # False: a missing value is the column's zero


RAW = (
    Column("timestamp", "DateTime", "time"),
    Column("org_id", "UUID", "uuid"),
    Column("campaign_id", "UUID", "uuid"),
    Column("dsp_type", "LowCardinality(String)", "text"),
    Column("impressions", "UInt64", "count", MAX_COUNT),
    Column("clicks", "UInt64", "count", MAX_COUNT),
    Column("conversions", "UInt64", "count", MAX_COUNT),
    Column("spend", "Decimal(15, 2)", "money"),
    Column("revenue", "Decimal(15, 2)", "money"),
)
EVENTS = (
    Column("timestamp", "DateTime64(3)", "time"),
    Column("org_id", "UUID", "uuid"),
    Column("user_id", "UUID", "uuid", required=False),
    Column("session_id", "String", "text", required=False),
    Column("event_type", "LowCardinality(String)", "text"),
    Column("resource_type", "LowCardinality(String)", "text", required=False),
    Column("resource_id", "String", "text", required=False),
    Column("properties", "String", "text", required=False),
    Column("ip", "IPv6", "ip", required=False),
    Column("user_agent", "String", "text", required=False),
)
API_LOGS = (
    Column("timestamp", "DateTime64(3)", "time"),
    Column("org_id", "UUID", "uuid"),
    Column("user_id", "UUID", "uuid", required=False),
    Column("request_id", "String", "text", required=False),
    Column("method", "LowCardinality(String)", "text"),
    Column("path", "LowCardinality(String)", "text"),
    Column("status_code", "UInt16", "count", 2**16 - 1),
    Column("duration_ms", "UInt32", "count", 2**32 - 1, required=False),
    Column("request_bytes", "UInt32", "count", 2**32 - 1, required=False),
    Column("response_bytes", "UInt32", "count", 2**32 - 1, required=False),
    Column("dsp_type", "LowCardinality(String)", "text", required=False),
    Column("error", "String", "text", required=False),
)
TABLES: dict[str, tuple[Column, ...]] = {
    "campaign_metrics_raw": RAW, "user_events": EVENTS, "api_logs": API_LOGS,
}
NIL_UUID = uuid.UUID(int=0)
ZERO = {"uuid": NIL_UUID, "count": 0, "text": "", "ip": "::"}


class WriteFailed(ClickHouseError):
    """A batch failed while it was written; earlier batches of the call are complete.

    ``written``: rows of the batches before the failed one (complete, raw and
    rollups). ``token``: the call's deduplication token; write the same rows
    with it again to complete the write without counting anything twice.
    """

    def __init__(self, message: str, *, written: int, token: str, batch: int,
                 code: int | None = None, name: str | None = None) -> None:
        super().__init__(message, code=code, name=name)
        self.written = written
        self.token = token
        self.batch = batch


def insert_settings(token: str) -> dict[str, Any]:
    """Settings of every batch: synchronous, deduplicated by ``token``, views included."""
    return {
        "insert_deduplicate": 1,
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        "materialized_views_ignore_errors": 0,
        "async_insert": 0,
    }


class MetricsWriter:
    """Validated, batched, deduplicated inserts into the raw analytics tables.

    ``known_orgs``: the tenants a row may belong to. When omitted they are
    read once from the ``organizations_dict`` dictionary (PostgreSQL's
    organizations), so a row for an org that does not exist is refused.
    """

    def __init__(self, client: Client, known_orgs: Iterable[uuid.UUID | str] | None = None,
                 batch_size: int = DEFAULT_BATCH) -> None:
        if batch_size < 1:
            raise ValidationError("batch_size must be at least 1")
        self.client = client
        self.batch_size = batch_size
        self._orgs: frozenset[uuid.UUID] | None = None
        if known_orgs is not None:
            self._orgs = frozenset(_uuid(o, "org_id", i) for i, o in enumerate(known_orgs))

    # ------------------------------------------------------------ rows

    def write_raw(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]], *,
                  token: str | None = None) -> int:
        """Raw campaign metrics; returns the rows written (all of them, or it raises)."""
        return self._write_rows("campaign_metrics_raw", rows, token)

    def write_events(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]], *,
                     token: str | None = None) -> int:
        return self._write_rows("user_events", rows, token)

    def write_api_logs(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]], *,
                       token: str | None = None) -> int:
        return self._write_rows("api_logs", rows, token)

    def _write_rows(self, table: str, rows: Iterable[Mapping[str, Any] | Sequence[Any]],
                    token: str | None) -> int:
        columns = TABLES[table]
        call = _call_token(token)
        written, offset, number = 0, 0, 0
        batch: list[Mapping[str, Any] | Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= self.batch_size:
                written += self._send_rows(table, columns, batch, offset, call, number, written)
                offset, number, batch = offset + len(batch), number + 1, []
        if batch:
            written += self._send_rows(table, columns, batch, offset, call, number, written)
        return written

    def _send_rows(self, table: str, columns: Sequence[Column],
                   batch: Sequence[Mapping[str, Any] | Sequence[Any]], offset: int, call: str,
                   number: int, written: int) -> int:
        data = _columns(columns, batch, offset)
        self._check_orgs(table, data[1], offset)
        with _Failures(table, call, number, written, offset, len(batch)):
            self.client.insert(
                table, data, column_names=[c.name for c in columns],
                column_type_names=[c.type for c in columns], column_oriented=True,
                settings=insert_settings(f"{call}:{number}"))
        return len(batch)

    def _check_orgs(self, table: str, orgs: Sequence[uuid.UUID], offset: int) -> None:
        known = self.known_orgs()
        for index, org in enumerate(orgs, start=offset):
            if org not in known:
                raise ValidationError(f"{table} row {index}: unknown org_id {org}; nothing of "
                                      "this batch was written")

    def known_orgs(self) -> frozenset[uuid.UUID]:
        if self._orgs is None:
            with translated():
                result = self.client.query("SELECT id FROM organizations_dict")
            self._orgs = frozenset(row[0] for row in result.result_rows)
        return self._orgs

    # --------------------------------------------------------- columns

    def write_raw_columns(self, data: pa.Table | Mapping[str, Any], *,
                          token: str | None = None) -> int:
        """Raw metrics already in columns (Arrow arrays or lists), one INSERT.

        Money columns are Decimal (at most 2 decimals) or integer cents;
        floats are refused (not exact). ``token`` as for :meth:`write_raw`
        (this is batch 0).
        """
        import pyarrow as pa  # the optional fast path: only bulk loaders need Arrow

        table = data if isinstance(data, pa.Table) else pa.table(dict(data))
        conformed = _conform(RAW, table)
        self._check_org_column("campaign_metrics_raw", conformed.column("org_id"))
        if conformed.num_rows == 0:
            return 0
        call = _call_token(token)
        with _Failures("campaign_metrics_raw", call, 0, 0, 0, conformed.num_rows):
            self.client.insert_arrow("campaign_metrics_raw", conformed,
                                     settings=insert_settings(f"{call}:0"))
        return int(conformed.num_rows)

    def _check_org_column(self, table: str, orgs: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        known = pa.array([o.bytes for o in self.known_orgs()], pa.binary(16))
        unknown = pc.invert(pc.is_in(orgs.cast(pa.binary(16)), value_set=known))
        if pc.any(unknown).as_py():
            bad = _first(unknown)
            org = uuid.UUID(bytes=orgs[bad].as_py())
            raise ValidationError(f"{table} row {bad}: unknown org_id {org}; nothing of this "
                                  "batch was written")


class _Failures:
    """Turns a failed INSERT into :class:`WriteFailed` naming the batch and the token."""

    def __init__(self, table: str, call: str, number: int, written: int, offset: int,
                 rows: int) -> None:
        self.table, self.call, self.number = table, call, number
        self.written, self.offset, self.rows = written, offset, rows

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if isinstance(exc, cc_errors.Error):
            raise WriteFailed(
                f"{self.table} batch {self.number} (rows {self.offset}.."
                f"{self.offset + self.rows - 1}) failed while it was written: {one_line(exc)}; "
                f"{self.written} row(s) of earlier batches were written; write the same rows "
                f"again with token {self.call!r} to complete it (nothing is counted twice)",
                written=self.written, token=self.call, batch=self.number,
                code=getattr(exc, "code", None), name=getattr(exc, "name", None)) from exc


def _call_token(token: str | None) -> str:
    if token is None:
        return uuid.uuid4().hex
    if not token or len(token) > 200:
        raise ValidationError("a deduplication token is 1 to 200 characters")
    return token


# ------------------------------------------------------------ row values


def _columns(columns: Sequence[Column], rows: Sequence[Mapping[str, Any] | Sequence[Any]],
             offset: int) -> list[list[Any]]:
    values: list[list[Any]] = [[] for _ in columns]
    names = {c.name for c in columns}
    for index, row in enumerate(rows, start=offset):
        if isinstance(row, Mapping):
            unknown = set(row) - names
            if unknown:
                raise ValidationError(f"row {index}: unknown field(s) {', '.join(sorted(unknown))}")
            items = [row.get(c.name) for c in columns]
        else:
            if len(row) != len(columns):
                raise ValidationError(f"row {index}: expected {len(columns)} values, "
                                      f"got {len(row)}")
            items = list(row)
        for position, (column, value) in enumerate(zip(columns, items, strict=True)):
            values[position].append(_value(column, value, index))
    return values


def _value(column: Column, value: Any, row: int) -> Any:
    if value is None:
        if column.required or column.kind not in ZERO:
            raise ValidationError(f"row {row}: {column.name} is missing")
        return ZERO[column.kind]
    if column.kind == "uuid":
        return _uuid(value, column.name, row)
    if column.kind == "time":
        return _timestamp(value, column.name, row)
    if column.kind == "count":
        return _count(value, column, row)
    if column.kind == "money":
        return money(value, column.name, row)
    if column.kind == "ip":
        if value == "":
            return "::"
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise ValidationError(
                f"row {row}: {column.name} {value!r} is not an IP address") from exc
    return str(value)


def _count(value: Any, column: Column, row: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"row {row}: {column.name} must be a non-negative integer, got {value!r}")
    if value > column.maximum:
        raise ValidationError(
            f"row {row}: {column.name} {value} is above the maximum of {column.maximum:,}")
    return value


def _uuid(value: Any, name: str, row: int) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value))
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


def money(value: Any, name: str = "amount", row: int = 0) -> decimal.Decimal:
    """``value`` as an exact amount with two decimals, or a :class:`ValidationError`.

    Accepts ``Decimal``, ``int`` (whole units) and decimal text; refuses floats
    (binary fractions are not exact money), ``None``, negative amounts, more
    than two decimals and amounts above :data:`MAX_MONEY`.
    """
    if isinstance(value, bool | float):
        raise ValidationError(f"row {row}: {name} {value!r} is a float; money must be exact "
                              "(Decimal, int or decimal text)")
    try:
        amount = value if isinstance(value, decimal.Decimal) else decimal.Decimal(
            str(value) if isinstance(value, int) else value)
    except (decimal.InvalidOperation, TypeError, ValueError) as exc:
        raise ValidationError(f"row {row}: {name} {value!r} is not an amount") from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationError(f"row {row}: {name} must be a non-negative amount, got {value!r}")
    if amount > MAX_MONEY:
        raise ValidationError(f"row {row}: {name} {value!r} is above the maximum of {MAX_MONEY}")
    if amount != amount.quantize(CENT, rounding=decimal.ROUND_DOWN):
        raise ValidationError(f"row {row}: {name} {value!r} has more than 2 decimals")
    return amount


# ------------------------------------------------------------ Arrow columns


def _arrow_type(column: Column) -> Any:
    import pyarrow as pa

    return {
        "time": pa.timestamp("s", tz="UTC"), "uuid": pa.binary(16), "text": pa.string(),
        "count": pa.uint64(), "money": pa.decimal128(MONEY_PRECISION, 2),
    }[column.kind]


def _first(mask: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def _conform(columns: Sequence[Column], table: pa.Table) -> pa.Table:
    """``table`` with exactly ``columns``, cast exactly to their types; errors name the row."""
    import pyarrow as pa

    missing = [c.name for c in columns if c.name not in table.column_names]
    if missing:
        raise ValidationError(f"missing column(s): {', '.join(missing)}")
    arrays = [_conform_column(column, table.column(column.name)) for column in columns]
    return pa.table(arrays, names=[c.name for c in columns])


def _conform_column(column: Column, values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.null_count:
        raise ValidationError(f"row {_first(pc.is_null(values))}: {column.name} is missing")
    if column.kind in ("count", "money"):
        if pa.types.is_floating(values.type):
            raise ValidationError(f"{column.name}: a float column is not exact; pass integers"
                                  + (" (cents) or decimals" if column.kind == "money" else ""))
        exact = pa.types.is_integer(values.type) or (
            column.kind == "money" and pa.types.is_decimal(values.type))
        if not exact:
            raise ValidationError(f"{column.name}: expected "
                                  f"{'integers' if column.kind == 'count' else 'numbers'},"
                                  f" got {values.type}")
        if pa.types.is_integer(values.type):  # compared in 64 bits, never cast with loss
            values = values.cast(pa.uint64() if pa.types.is_unsigned_integer(values.type)
                                 else pa.int64())
        negative = pc.less(values, pa.scalar(0, values.type))
        if pc.any(negative).as_py():
            raise ValidationError(f"row {_first(negative)}: {column.name} must not be negative")
    if column.kind == "count":
        high = pc.greater(values, pa.scalar(column.maximum, values.type))
        if pc.any(high).as_py():
            raise ValidationError(f"row {_first(high)}: {column.name} is above the maximum of "
                                  f"{column.maximum:,}")
    if column.kind == "money":
        return _money_column(column, values)
    try:
        cast = values.cast(_arrow_type(column))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(f"{column.name}: {exc}") from exc
    return _compact(column, cast)


def _compact(column: Column, values: Any) -> Any:
    """What ClickHouse stores, in fewer bytes: DateTime as UInt32 seconds, LowCardinality
    as an Arrow dictionary, counts within UInt32 as such (ClickHouse widens them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type == "DateTime":
        try:
            return values.cast(pa.int64()).cast(pa.uint32())
        except pa.ArrowInvalid as exc:
            bad = _first(pc.or_(pc.less(values.cast(pa.int64()), 0),
                                pc.greater(values.cast(pa.int64()), 2**32 - 1)))
            raise ValidationError(f"row {bad}: {column.name} is outside ClickHouse's DateTime "
                                  "range") from exc
    if column.type.startswith("LowCardinality"):
        return pc.dictionary_encode(values)
    if column.kind == "count" and column.maximum <= 2**32 - 1:
        return values.cast(pa.uint32())  # checked against the maximum above
    return values


def _money_column(column: Column, values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(values.type):
        high = pc.greater(values, pa.scalar(int(MAX_MONEY * 100), values.type))
        if pc.any(high).as_py():
            raise ValidationError(f"row {_first(high)}: {column.name} is above the maximum of "
                                  f"{MAX_MONEY}")
        return cents_to_money(values)
    try:  # decimals: a rescale that would drop digits is refused, not rounded
        exact = values.cast(pa.decimal128(38, 2))
    except pa.ArrowInvalid as exc:
        raise ValidationError(f"{column.name}: an amount has more than 2 decimals") from exc
    high = pc.greater(exact, pa.scalar(MAX_MONEY, pa.decimal128(38, 2)))
    if pc.any(high).as_py():
        raise ValidationError(f"row {_first(high)}: {column.name} is above the maximum of "
                              f"{MAX_MONEY}")
    return exact.cast(_money_type())


def _money_type() -> Any:
    """Decimal(15, 2) in 8 bytes where pyarrow has ``decimal64`` (18+), else 16."""
    import pyarrow as pa

    return (pa.decimal64(MONEY_PRECISION, 2) if hasattr(pa, "decimal64")
            else pa.decimal128(MONEY_PRECISION, 2))


def cents_to_money(cents: Any) -> Any:
    """Integer cents as Decimal(15, 2), exactly and without a Python loop.

    A decimal's storage is its unscaled integer: cents (scale 2) are already it,
    so the int64 buffer is reused as is (sign-extended to 128 bits on old pyarrow).
    """
    import pyarrow as pa

    values = cents.combine_chunks() if isinstance(cents, pa.ChunkedArray) else cents
    values = values.cast(pa.int64())
    money_type = _money_type()
    if money_type.bit_width == 64:
        return pa.Array.from_buffers(money_type, len(values), values.buffers(),
                                     offset=values.offset)
    import numpy as np  # pyarrow < 18 only

    numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
    words = np.empty((numbers.size, 2), dtype=np.int64)
    words[:, 0] = numbers
    words[:, 1] = np.where(numbers < 0, -1, 0)
    return pa.Array.from_buffers(money_type, numbers.size, [None, pa.py_buffer(words.tobytes())])

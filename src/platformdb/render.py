"""A statement's result as a person or a tool reads it: a table, CSV or JSON.

``platformdb query`` prints with it, and so does the ClickHouse prompt.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rich.markup import escape
from rich.table import Table

from platformdb.types import QueryResult

FORMATS = ("table", "csv", "json", "tsv")


def cell(value: Any) -> str:
    """A value as text, the way a CLI shows it (NULL as empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float | Decimal):
        return format(value, "f") if isinstance(value, Decimal) else repr(value)
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return cell(value)  # Decimal, UUID, dates: as text, exactly


def as_csv(result: QueryResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if result.columns:
        writer.writerow(result.columns)
        writer.writerows([[cell(v) for v in row] for row in result.rows])
    else:
        writer.writerow([result.status])
    return out.getvalue()


def as_tsv(result: QueryResult) -> str:
    """Tab-separated rows without a header, as ``clickhouse-client`` prints by default
    (ClickHouse's TabSeparated escaping; NULL as ``\\N``); a status line alone."""
    if not result.columns:
        return f"{result.status}\n"

    def escaped(value: Any) -> str:
        if value is None:
            return "\\N"
        text = cell(value)
        return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))

    return "".join("\t".join(escaped(v) for v in row) + "\n" for row in result.rows)


def json_value(result: QueryResult) -> Any:
    """``result`` as JSON-ready data: a list of row objects, or ``{"status": ...}``."""
    if not result.columns:
        return {"status": result.status}
    return [{name: _json_value(value) for name, value in zip(result.columns, row, strict=True)}
            for row in result.rows]


def as_json(result: QueryResult) -> str:
    return json.dumps(json_value(result), indent=2)


def as_table(result: QueryResult) -> Any:
    """A rich table (or the status line) of ``result``."""
    if not result.columns:
        return escape(result.status)
    table = Table(*[escape(name) for name in result.columns])
    for column in table.columns:
        column.overflow = "fold"
    for row in result.rows:
        table.add_row(*[escape(cell(v)) if v is not None else "[dim]NULL[/]" for v in row])
    return table

"""What ``migrate plan`` reports, for every store: each pending statement's locks,
rewrites, scans and sizes, and a verdict -- ``ok``, ``caution`` or ``danger`` --
with why and the safe alternative.

The types only: each store's planner fills them (PostgreSQL:
:mod:`platformdb.stores.postgres.plan`; ClickHouse:
:mod:`platformdb.stores.clickhouse.plan`). Nothing is executed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("ok", "caution", "danger")
BACKFILL = "a batched backfill (`-- platformdb: backfill` or `platformdb migrate backfill`)"


@dataclass
class Target:
    """One relation a statement touches, with what it does to it and how big it is."""

    relation: str | None
    lock: str
    action: str
    blocks: str = ""
    rewrite: bool = False
    scan: bool = False
    build: bool = False
    destructive: bool = False
    exists: bool = False
    new: bool = False
    """Created earlier in this plan (or by this statement): empty."""
    kind: str = ""
    rows: int | None = None
    bytes: int = 0
    partitions: int = 0
    note: str = ""


@dataclass
class StatementPlan:
    line: int
    sql: str
    statement: str
    lock: str
    targets: list[Target] = field(default_factory=list)
    severity: str = "ok"
    why: list[str] = field(default_factory=list)
    instead: list[str] = field(default_factory=list)

    def flag(self, severity: str, why: str, instead: str = "") -> None:
        if SEVERITIES.index(severity) > SEVERITIES.index(self.severity):
            self.severity = severity
        if why and why not in self.why:
            self.why.append(why)
        if instead and instead not in self.instead:
            self.instead.append(instead)


@dataclass
class MigrationPlan:
    store: str
    version: int
    label: str
    mode: str
    """``transaction``, ``no-transaction``, ``online-index``, ``backfill`` (ClickHouse:
    ``statements``)."""
    statements: list[StatementPlan] = field(default_factory=list)

    @property
    def severity(self) -> str:
        worst = [s.severity for s in self.statements] or ["ok"]
        return max(worst, key=SEVERITIES.index)

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["severity"] = self.severity
        return found


def size_text(target: Target) -> str:
    """``12,345 rows, 3.1 MB (21 partitions)`` -- or ``new``, ``not found``."""
    if target.new:
        return "new"
    if not target.exists:
        return "not found"
    if target.kind == "view":
        return "view"
    rows = "? rows" if target.rows is None else f"{target.rows:,} rows"
    parts = f" ({target.partitions} partitions)" if target.partitions else ""
    return f"{rows}, {human_bytes(target.bytes)}{parts}"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"

"""The load-test dataset, streamed at a scale factor.

At scale 1: 1 000 organizations, 50 000 users (50 per org), 100 000 campaigns
(100 per org), 10 000 000 daily ``campaign_metrics`` rows in PostgreSQL
(100 days per campaign) and 50 000 000 raw metric rows in ClickHouse (500
imports per campaign over the last 88 days, inside the raw table's 90-day TTL);
other scales scale the number of organizations, so every org looks the same
and memory stays flat: data is
generated and sent one organization chunk at a time.

- PostgreSQL: binary ``COPY`` per table, all in **one transaction**: a failed
  or interrupted load leaves nothing behind. As a superuser the transaction
  skips triggers (``session_replication_role = replica``, as ``pg_restore
  --disable-triggers`` does): the generated references are correct by
  construction, and bulk data needs no per-row audit trail.
- ClickHouse: Arrow batches through :class:`MetricsWriter` (one INSERT per
  batch); if anything fails, the load's rows are deleted again (ClickHouse has
  no transactions), before the PostgreSQL transaction is rolled back.

Ids are deterministic (``10ad....`` UUIDs), so a load is recognisable: a
second load into a database that already has one is refused, unless
``--replace``, which deletes just the previous load (test and demo data stay)
and loads the new one.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
from psycopg import sql

from platformdb.errors import Hint, ValidationError, when_interrupted
from platformdb.ops.context import Context, context
from platformdb.ops.seed.base import SeedReport
from platformdb.postgres import connect
from platformdb.types import Endpoints

USERS_PER_ORG = 50
CAMPAIGNS_PER_ORG = 100
DAYS = 100
RAW_DAYS = 88  # inside campaign_metrics_raw's 90-day TTL, with a margin
RAW_PER_CAMPAIGN = 500
# the bcrypt hash (cost 10, the least users.password_hash accepts; a fixed salt
# so that loads are reproducible) of the documented password "Load#2026"
PASSWORD_HASH = "$2b$10$platformdbloadseedsaleCqTw0V7cwelg0N.RJ5oxzfoI9xTT6rm"  # noqa: S105 - bcrypt hash of a documented demo password
DSPS = ("dv360", "the_trade_desk", "amazon_dsp", "xandr")
ORG_BASE = 0x10AD0000_0000_4000_8000_000000000000
USER_BASE = 0x10AD0001_0000_4000_8000_000000000000
CONNECTOR_BASE = 0x10AD0002_0000_4000_8000_000000000000
CAMPAIGN_BASE = 0x10AD0003_0000_4000_8000_000000000000
CHUNK_ORGS = 10

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class LoadPlan:
    scale: float
    orgs: int

    @property
    def users(self) -> int:
        return self.orgs * USERS_PER_ORG

    @property
    def campaigns(self) -> int:
        return self.orgs * CAMPAIGNS_PER_ORG

    @property
    def metrics(self) -> int:
        return self.campaigns * DAYS

    @property
    def raw(self) -> int:
        return self.campaigns * RAW_PER_CAMPAIGN


def plan(scale: float) -> LoadPlan:
    if not 0 < scale <= 100:
        raise ValidationError(f"scale must be > 0 and <= 100, got {scale}")
    return LoadPlan(scale, max(1, round(1000 * scale)))


def org_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=ORG_BASE + n)


def seed_load(target: Context | Endpoints, scale: float = 1.0, *, progress: Progress | None = None,
              clickhouse: bool = True, today: dt.date | None = None,
              replace: bool = False) -> Any:
    """Load the dataset at ``scale``; returns a :class:`~platformdb.ops.seed.SeedReport`.

    Each table's rows go to the context's progress as they stream (and to ``progress``
    when given). A load that is already there is refused, unless ``replace``: then the
    previous load's rows (its ``10ad...`` orgs, whatever its scale) are deleted in the
    same PostgreSQL transaction and from ClickHouse first; test and demo data stay.
    """
    ctx = context(target)

    shape = plan(scale)
    last_day = today or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    url = ctx.url("postgresql")
    report = SeedReport("load")
    started = time.monotonic()
    with connect(url) as conn:
        present = conn.execute("SELECT 1 FROM organizations WHERE id = %s",
                               (org_id(0),)).fetchone()
        if present and not replace:
            raise ValidationError("a load dataset is already there",
                                  hint=Hint(flag="--replace", does="to replace just it"))
        totals = {"clickhouse raw": shape.raw if clickhouse else 0,
                  "organizations": shape.orgs, "users": shape.users, "user_roles": shape.users,
                  "dsp_connectors": shape.orgs, "campaigns": shape.campaigns,
                  "campaign_metrics": shape.metrics}
        written: dict[str, int] = {}
        with ctx.progress.task("seed load", total=sum(totals.values()), unit="rows") as task:

            def tick(what: str, rows: int) -> None:
                written[what] = written.get(what, 0) + rows
                task.update(description=f"seed load ({what})")
                task.advance(rows)
                if progress is not None:
                    progress(what, rows)

            with when_interrupted(_undone(bool(present))):
                try:
                    if present:
                        _remove_previous(conn, ctx.url("clickhouse") if clickhouse else None)
                    if clickhouse:
                        _clickhouse(ctx.url("clickhouse"), shape, last_day, tick)
                    _postgres(conn, shape, last_day, tick)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    if written.get("clickhouse raw"):  # rows went in: take them out again
                        _undo_clickhouse(ctx.url("clickhouse"), shape)
                    raise
    seconds = time.monotonic() - started
    report.counts = {"organizations": shape.orgs, "users": shape.users,
                     "campaigns": shape.campaigns, "campaign_metrics": shape.metrics,
                     "clickhouse_raw_rows": shape.raw if clickhouse else 0}
    report.notes.append(f"loaded in {seconds:.1f} s"
                        + (", replacing the previous load" if present else ""))
    return report


def _undone(replaced: bool) -> str:
    if replaced:
        return ("nothing was loaded: PostgreSQL keeps the previous load (its transaction was "
                "rolled back) but its ClickHouse rows were deleted: run the load again")
    return "nothing was loaded: the PostgreSQL transaction was rolled back and the load's " \
        "ClickHouse rows deleted"


LOAD_RANGE = (uuid.UUID(int=ORG_BASE), uuid.UUID(int=ORG_BASE + 2**32))
"""Every org id a load of any scale uses (``10ad0000-...``): what --replace removes."""


def _remove_previous(conn: Any, clickhouse_url: str | None) -> int:
    """Delete the previous load's rows, in the load's transaction (PostgreSQL) and
    from ClickHouse; the number of its orgs."""
    orgs = [row[0] for row in conn.execute(
        "SELECT id FROM organizations WHERE id >= %s AND id < %s", LOAD_RANGE).fetchall()]
    superuser = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if superuser and superuser[0]:
        # generated rows, no per-row audit of their removal (as the load wrote them)
        conn.execute("SET LOCAL session_replication_role = replica")
    for table in REPLACED_TABLES:
        conn.execute(sql.SQL("DELETE FROM {} WHERE org_id >= %s AND org_id < %s").format(
            sql.Identifier(table)), LOAD_RANGE)
    conn.execute("DELETE FROM organizations WHERE id >= %s AND id < %s", LOAD_RANGE)
    if clickhouse_url is not None and orgs:
        _delete_clickhouse(clickhouse_url, orgs)
    return len(orgs)


REPLACED_TABLES = ("campaign_metrics", "notifications", "etl_jobs", "auth_tokens", "campaigns",
                   "dsp_connectors", "user_roles", "users")
"""The tables that may hold a load org's rows besides organizations, children first (the
audit trail stays: the load writes none as a superuser, and it is append-only)."""


# ---------------------------------------------------------------- PostgreSQL

def _copy(conn: Any, table: str, columns: str, types: list[str],
          rows: Iterator[tuple[Any, ...]], tick: Progress, what: str) -> None:
    count = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c.strip()) for c in columns.split(",")))
    with conn.cursor().copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % 50_000 == 0:
                tick(what, 50_000)
    tick(what, count % 50_000)


def _postgres(conn: Any, shape: LoadPlan, last_day: dt.date, tick: Progress) -> None:
    first_day = last_day - dt.timedelta(days=DAYS - 1)
    superuser = conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if superuser and superuser[0]:
        # As pg_restore --disable-triggers does: no per-row foreign-key checks and no audit
        # rows for generated data whose references are correct by construction. For this
        # transaction only; without superuser rights the load runs with every trigger.
        conn.execute("SET LOCAL session_replication_role = replica")
    created = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    _copy(conn, "organizations", "id, name, slug, created_at",
          ["uuid", "varchar", "varchar", "timestamptz"],
          ((org_id(n), f"Load Org {n}", f"load-{n}", created) for n in range(shape.orgs)),
          tick, "organizations")
    _copy(conn, "users", "org_id, id, email, password_hash, name, created_at",
          ["uuid", "uuid", "varchar", "varchar", "varchar", "timestamptz"],
          ((org_id(u // USERS_PER_ORG), uuid.UUID(int=USER_BASE + u),
            f"user{u}@load-{u // USERS_PER_ORG}.test", PASSWORD_HASH, f"Load User {u}", created)
           for u in range(shape.users)),
          tick, "users")
    _copy(conn, "user_roles", "org_id, user_id, role",
          ["uuid", "uuid", "varchar"],
          ((org_id(u // USERS_PER_ORG), uuid.UUID(int=USER_BASE + u),
            ("owner", "admin", "campaign_manager", "analyst", "viewer")[min(u % USERS_PER_ORG, 4)])
           for u in range(shape.users)), tick, "user_roles")
    _copy(conn, "dsp_connectors", "org_id, id, name, dsp_type, status",
          ["uuid", "uuid", "varchar", "varchar", "varchar"],
          ((org_id(n), uuid.UUID(int=CONNECTOR_BASE + n), "Load DV360", "dv360", "active")
           for n in range(shape.orgs)), tick, "dsp_connectors")
    _copy(conn, "campaigns",
          "org_id, id, dsp_connector_id, external_id, name, status, budget, start_date, end_date",
          ["uuid", "uuid", "uuid", "varchar", "varchar", "varchar", "numeric", "date", "date"],
          ((org_id(c // CAMPAIGNS_PER_ORG), uuid.UUID(int=CAMPAIGN_BASE + c),
            uuid.UUID(int=CONNECTOR_BASE + c // CAMPAIGNS_PER_ORG), f"io-{c}", f"Load Campaign {c}",
            "active", Decimal(10_000 + c % 90_000), first_day, last_day)
           for c in range(shape.campaigns)), tick, "campaigns")
    with _indexes_built_after(conn, "campaign_metrics"):
        _copy_metrics(conn, shape, first_day, tick)


@contextmanager
def _indexes_built_after(conn: Any, table: str) -> Iterator[None]:
    """Into an empty ``table``: drop its indexes, load, build them again.

    Building a B-tree from sorted data is much cheaper than inserting millions
    of rows into it one by one (bench/bench_seed.py: about 1.7x for
    campaign_metrics). It all happens inside the load's transaction: a failed
    load rolls the indexes back with the rows. A table that already holds rows
    keeps its indexes.
    """
    name = sql.Identifier("public", table)
    if conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(name)).fetchone()[0]:
        yield
        return
    indexes = conn.execute(
        "SELECT ic.relname, con.conname, pg_get_constraintdef(con.oid),"
        " pg_get_indexdef(i.indexrelid)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid LEFT JOIN pg_constraint con"
        "  ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid"
        " WHERE i.indrelid = %s::regclass ORDER BY i.indisprimary DESC, 1",
        (f"public.{table}",)).fetchall()
    for index, constraint, _, _ in indexes:
        if constraint:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                name, sql.Identifier(constraint)))
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier("public", index)))
    yield
    for _, constraint, constraint_def, index_def in indexes:
        if constraint:
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                name, sql.Identifier(constraint), sql.SQL(constraint_def)))
        else:  # the catalogue's own definition, on the parent and every partition
            conn.execute(sql.SQL(index_def.replace(" ON ONLY ", " ON ", 1)))


PG_EPOCH = dt.date(2000, 1, 1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
COPY_TRAILER = b"\xff\xff"


def _copy_metrics(conn: Any, shape: LoadPlan, first_day: dt.date, tick: Progress) -> None:
    """campaign_metrics through binary COPY, built by numpy one org chunk at a time.

    Every row has the same layout, so a chunk is one structured array: 9 fields
    of fixed width (a DSP's name has one length, so rows are grouped by DSP).
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (
        "org_id", "campaign_id", "metric_date", "dsp_type", "impressions", "clicks",
        "conversions", "spend", "revenue"))
    statement = sql.SQL("COPY campaign_metrics ({}) FROM STDIN (FORMAT BINARY)").format(columns)
    with conn.cursor().copy(statement) as copy:
        copy.write(COPY_HEADER)
        for start in range(0, shape.orgs, CHUNK_ORGS):
            orgs = range(start, min(start + CHUNK_ORGS, shape.orgs))
            rows = 0
            for chunk in _metric_chunks(orgs, (first_day - PG_EPOCH).days):
                copy.write(chunk.tobytes())
                rows += chunk.size
            tick("campaign_metrics", rows)
        copy.write(COPY_TRAILER)


def _numeric_dtype() -> list[tuple[str, str]]:
    # numeric as 3 base-10000 digits: ndigits, weight, sign, dscale, then the digits
    return [("len", ">i4"), ("ndigits", ">i2"), ("weight", ">i2"), ("sign", ">i2"),
            ("dscale", ">i2"), ("d0", ">i2"), ("d1", ">i2"), ("d2", ">i2")]


def _metric_chunks(orgs: range, first_day: int) -> Iterator[np.ndarray]:
    campaigns = np.arange(orgs.start * CAMPAIGNS_PER_ORG, orgs.stop * CAMPAIGNS_PER_ORG)
    for dsp_index, dsp in enumerate(DSPS):
        mine = campaigns[campaigns % len(DSPS) == dsp_index]
        if mine.size == 0:
            continue
        c = np.repeat(mine, DAYS)
        d = np.tile(np.arange(DAYS), mine.size)
        seed = (c * 7919 + d * 104_729) % 100_000
        impressions = 1_000 + seed % 9_000
        clicks = impressions // 100 + seed % 7
        width = len(dsp)
        layout = np.dtype([
            ("nfields", ">i2"),
            ("org_len", ">i4"), ("org", "S16"),
            ("camp_len", ">i4"), ("camp", "S16"),
            ("date_len", ">i4"), ("date", ">i4"),
            ("dsp_len", ">i4"), ("dsp", f"S{width}"),
            ("imp_len", ">i4"), ("imp", ">i8"),
            ("clk_len", ">i4"), ("clk", ">i8"),
            ("conv_len", ">i4"), ("conv", ">i8"),
            ("spend", _numeric_dtype()),
            ("revenue", _numeric_dtype()),
        ])
        out = np.empty(c.size, dtype=layout)
        out["nfields"] = 9
        out["org_len"], out["camp_len"], out["date_len"], out["dsp_len"] = 16, 16, 4, width
        out["imp_len"] = out["clk_len"] = out["conv_len"] = 8
        out["org"] = _uuid_bytes(ORG_BASE, c // CAMPAIGNS_PER_ORG)
        out["camp"] = _uuid_bytes(CAMPAIGN_BASE, c)
        out["date"] = first_day + d
        out["dsp"] = dsp.encode()
        out["imp"], out["clk"], out["conv"] = impressions, clicks, clicks // 10
        _numeric(out["spend"], seed)
        _numeric(out["revenue"], (seed * 3) % 100_000)
        yield out


def _numeric(field: np.ndarray, cents: np.ndarray) -> None:
    """PostgreSQL's binary numeric for amounts in cents (< 10^10), scale 2."""
    units = cents // 100
    field["len"] = 14
    field["ndigits"], field["weight"], field["sign"], field["dscale"] = 3, 1, 0, 2
    field["d0"], field["d1"], field["d2"] = units // 10_000, units % 10_000, (cents % 100) * 100


def _uuid_bytes(base: int, offsets: np.ndarray) -> np.ndarray:
    words = np.empty((offsets.size, 2), dtype=">u8")
    words[:, 0] = np.uint64(base >> 64)
    words[:, 1] = np.uint64(base & 0xFFFF_FFFF_FFFF_FFFF) + offsets.astype(np.uint64)
    return words.view("S16").reshape(offsets.size)


# ---------------------------------------------------------------- ClickHouse

def _clickhouse(clickhouse_url: str, shape: LoadPlan, last_day: dt.date, tick: Progress) -> None:
    from platformdb import clickhouse
    from platformdb.clickhouse.writer import MetricsWriter

    first = dt.datetime.combine(last_day - dt.timedelta(days=RAW_DAYS - 1), dt.time(), dt.UTC)
    with clickhouse.connect(clickhouse_url) as client:
        writer = MetricsWriter(client, known_orgs=[org_id(n) for n in range(shape.orgs)])
        for start in range(0, shape.orgs, CHUNK_ORGS):
            orgs = range(start, min(start + CHUNK_ORGS, shape.orgs))
            table = _raw_chunk(orgs, int(first.timestamp()))
            writer.write_raw_columns(table)
            tick("clickhouse raw", table.num_rows)


def _raw_chunk(orgs: range, first_second: int) -> pa.Table:
    """Raw rows of some orgs: RAW_PER_CAMPAIGN imports per campaign, evenly spread, vectorised."""
    campaigns = np.arange(orgs.start * CAMPAIGNS_PER_ORG, orgs.stop * CAMPAIGNS_PER_ORG)
    c = np.repeat(campaigns, RAW_PER_CAMPAIGN)
    k = np.tile(np.arange(RAW_PER_CAMPAIGN), campaigns.size)
    seconds = first_second + k * (RAW_DAYS * 86_400 // RAW_PER_CAMPAIGN)
    seed = (c * 7919 + k * 104_729) % 100_000
    impressions = 200 + seed % 1_800
    return pa.table({
        "timestamp": pa.array(seconds.astype("datetime64[s]")).cast(pa.timestamp("s", tz="UTC")),
        "org_id": _uuids(ORG_BASE, c // CAMPAIGNS_PER_ORG),
        "campaign_id": _uuids(CAMPAIGN_BASE, c),
        "dsp_type": pa.array(np.array(DSPS)[c % len(DSPS)]),
        "impressions": pa.array(impressions.astype("uint64")),
        "clicks": pa.array((impressions // 100 + seed % 3).astype("uint64")),
        "conversions": pa.array((seed % 2).astype("uint64")),
        "spend": pa.array((seed % 2_000).astype("int64")),  # cents
        "revenue": pa.array(((seed * 3) % 6_000).astype("int64")),
    })


def _uuids(base: int, offsets: np.ndarray) -> pa.Array:
    """UUIDs base + offset as 16-byte big-endian values, without a Python loop."""
    data = _uuid_bytes(base, offsets).tobytes()
    return pa.Array.from_buffers(pa.binary(16), offsets.size, [None, pa.py_buffer(data)])


def _undo_clickhouse(clickhouse_url: str, shape: LoadPlan) -> None:
    _delete_clickhouse(clickhouse_url, [org_id(n) for n in range(shape.orgs)])


def _delete_clickhouse(clickhouse_url: str, ids: list[uuid.UUID]) -> None:
    from platformdb import clickhouse

    with clickhouse.connect(clickhouse_url) as client:
        for table in ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily"):
            for start in range(0, len(ids), 1000):
                client.command("DELETE FROM {table:Identifier} WHERE org_id IN {orgs:Array(UUID)}",
                               parameters={"table": table, "orgs": ids[start:start + 1000]})

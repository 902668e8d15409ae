"""ClickHouse benchmarks on chDB, each a ratio to a baseline measured in the same run.

1. MetricsWriter ingest (validated columnar batches through ``write_raw_columns``,
   each with its deduplication token, through clickhouse-connect's Client)
   against chDB's own ``INSERT ... SELECT FROM numbers()`` producing rows of
   the same shape into the same table (target >= 0.8x).
2. A 90-day per-campaign daily report read from ``campaign_metrics_daily``
   against the same report computed from ``campaign_metrics_raw``
   (target >= 20x at 10M raw rows).

Run:  .venv/bin/python bench/bench_clickhouse.py [--rows 10000000] [--batch 1000000] [--rounds 3]
Uses a scratch chDB path (deleted afterwards).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver import Client

from platformdb.clickhouse import connect, reports
from platformdb.clickhouse import rows as query_rows
from platformdb.clickhouse.writer import MetricsWriter
from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.stores.clickhouse.dictionaries import NOWHERE
from platformdb.stores.clickhouse.driver import ClickHouseDriver, dictionary_placeholders

ORGS = 4  # large advertisers: ~290 campaigns each at 10M rows
DAYS = 90
STEP = 900  # a DSP import every 15 minutes per campaign
ROWS_PER_CAMPAIGN = DAYS * 86400 // STEP  # 8 640


def uuids(prefix: str, count: int) -> np.ndarray:
    return np.frombuffer(b"".join(uuid.UUID(f"{prefix}-{i:012d}").bytes for i in range(count)),
                         dtype=np.uint8).reshape(count, 16)


def fixed(table: np.ndarray, index: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.binary(16), index.size,
                                 [None, pa.py_buffer(table[index].tobytes())])


def batch(start: int, rows: int, campaigns_per_org: int, orgs: np.ndarray,
          campaigns: np.ndarray, now: int, rng: np.random.Generator) -> pa.Table:
    """Rows start..start+rows: campaign n // 8640 at slot n % 8640 of the last 90 days."""
    n = np.arange(start, start + rows, dtype=np.int64)
    camp = n // ROWS_PER_CAMPAIGN
    seconds = now - (n % ROWS_PER_CAMPAIGN) * STEP
    return pa.table({
        "timestamp": pa.array(seconds.astype("datetime64[s]")).cast(pa.timestamp("s", tz="UTC")),
        "org_id": fixed(orgs, camp // campaigns_per_org),
        "campaign_id": fixed(campaigns, camp),
        "dsp_type": pa.array(np.where(camp % 3 == 0, "dv360", "the_trade_desk")),
        "impressions": pa.array(rng.integers(0, 5000, rows).astype("uint64")),
        "clicks": pa.array(rng.integers(0, 50, rows).astype("uint64")),
        "conversions": pa.array(rng.integers(0, 3, rows).astype("uint64")),
        "spend": pa.array(rng.integers(0, 10_000, rows), pa.int64()),  # cents
        "revenue": pa.array(rng.integers(0, 30_000, rows), pa.int64()),
    })


NUMBERS_INSERT = """
INSERT INTO campaign_metrics_raw
SELECT toDateTime({now} - (number % {per_campaign}) * {step}),
       toUUID(concat('00000000-0000-4000-8000-',
                     leftPad(toString(intDiv(number, {per_campaign} * {per_org})), 12, '0'))),
       toUUID(concat('00000000-0000-4000-9000-',
                     leftPad(toString(intDiv(number, {per_campaign})), 12, '0'))),
       if(intDiv(number, {per_campaign}) % 3 = 0, 'dv360', 'the_trade_desk'),
       number % 5000, number % 50, number % 3,
       toDecimal64(number % 10000, 0) / 100, toDecimal64(number % 30000, 0) / 100
FROM numbers({start}, {rows})
"""

REPORT_ROLLUP = """
SELECT date AS period, campaign_id, sum(impressions), sum(clicks), sum(conversions),
       toDecimal128(sum(spend), 2), toDecimal128(sum(revenue), 2)
FROM campaign_metrics_daily
WHERE org_id = {org:UUID} AND toDate(date) BETWEEN {start:Date} AND {end:Date}
GROUP BY period, campaign_id ORDER BY period, campaign_id
"""
ENGINE = "SELECT count(), sum(cityHash64(*)) FROM ({})"
REPORT_RAW = """
SELECT toDate(timestamp) AS period, campaign_id, sum(impressions), sum(clicks), sum(conversions),
       toDecimal128(sum(spend), 2), toDecimal128(sum(revenue), 2)
FROM campaign_metrics_raw
WHERE org_id = {org:UUID} AND toDate(timestamp) BETWEEN {start:Date} AND {end:Date}
GROUP BY period, campaign_id ORDER BY period, campaign_id
"""


def fresh(client: Client) -> None:
    for table in ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily"):
        client.command(f"TRUNCATE TABLE {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved ingest rounds; the best of each side counts")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="platformdb-bench-ch-"))
    with connect(f"chdb://{folder / 'chdb'}?database=bench") as client:
        run(client, args)
    shutil.rmtree(folder, ignore_errors=True)


def run(client: Client, args: argparse.Namespace) -> None:
    # the dictionaries are never read here: the writer gets known_orgs
    driver = ClickHouseDriver(client, dictionary_placeholders(client, NOWHERE))
    Migrator(driver, discover(migrations_dir("clickhouse"))).up()
    version = query_rows(client, "SELECT version()")[0][0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()};"
          f" chDB (ClickHouse {version}); {args.rows:,} rows in batches of {args.batch:,}")
    campaigns_total = -(-args.rows // ROWS_PER_CAMPAIGN)
    per_org = -(-campaigns_total // ORGS)
    org_ids = [uuid.UUID(f"00000000-0000-4000-8000-{i:012d}") for i in range(ORGS + 1)]
    orgs, campaigns = uuids("00000000-0000-4000-8000", ORGS + 1), \
        uuids("00000000-0000-4000-9000", campaigns_total + 1)
    now = int(time.time()) // STEP * STEP
    rng = np.random.default_rng(42)
    batches = [batch(start, min(args.batch, args.rows - start), per_org, orgs, campaigns,
                     now, rng) for start in range(0, args.rows, args.batch)]
    print(f"dataset: {campaigns_total:,} campaigns in {ORGS} orgs, one raw row per campaign"
          f" every {STEP // 60} minutes for {DAYS} days")

    writer_times, numbers_times = [], []
    for _ in range(args.rounds):
        fresh(client)
        started = time.perf_counter()
        writer = MetricsWriter(client, known_orgs=org_ids, batch_size=args.batch)
        for number, table in enumerate(batches):
            writer.write_raw_columns(table, token=f"bench:{number}")
        writer_times.append(time.perf_counter() - started)
        fresh(client)
        started = time.perf_counter()
        for start in range(0, args.rows, args.batch):
            client.command(NUMBERS_INSERT.format(
                now=now, per_campaign=ROWS_PER_CAMPAIGN, step=STEP, per_org=per_org,
                start=start, rows=min(args.batch, args.rows - start)))
        numbers_times.append(time.perf_counter() - started)
    w, n = min(writer_times), min(numbers_times)
    print(f"ingest: MetricsWriter {args.rows / w:,.0f} rows/s, INSERT ... SELECT FROM numbers()"
          f" {args.rows / n:,.0f} rows/s, ratio {n / w:.2f}x (target >= 0.8x)")

    fresh(client)  # the reports run on the writer's data
    writer = MetricsWriter(client, known_orgs=org_ids, batch_size=args.batch)
    for table in batches:
        writer.write_raw_columns(table)
    raw_rows = query_rows(client, "SELECT count() FROM campaign_metrics_raw")[0][0]
    daily_rows = query_rows(client, "SELECT count() FROM campaign_metrics_daily")[0][0]
    last = dt.datetime.fromtimestamp(now, dt.UTC).date()
    first = last - dt.timedelta(days=DAYS - 1)
    targets = org_ids[:ORGS]
    reports.campaign_totals(client, targets[0], first, last)  # warm-up
    query_rows(client, REPORT_RAW, {"org": targets[0], "start": first, "end": last})

    def timed(run: Callable[[uuid.UUID], object]) -> float:
        times = []
        for org in targets:
            started = time.perf_counter()
            run(org)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    rollup = timed(lambda org: reports.campaign_totals(client, org, first, last))
    raw = timed(lambda org: query_rows(client, REPORT_RAW,
                                       {"org": org, "start": first, "end": last}))
    # the engine's share: the same queries reduced to one row, so result transfer and
    # Python conversion (identical for both) do not hide the difference in work
    engine_rollup = timed(lambda org: query_rows(client, ENGINE.format(REPORT_ROLLUP), {
        "org": org, "start": first, "end": last}))
    engine_raw = timed(lambda org: query_rows(client, ENGINE.format(REPORT_RAW), {
        "org": org, "start": first, "end": last}))
    same = all(query_rows(client, REPORT_ROLLUP, {"org": o, "start": first, "end": last})
               == query_rows(client, REPORT_RAW, {"org": o, "start": first, "end": last})
               for o in targets[:3])
    print(f"90-day per-campaign daily report of one org ({per_org} campaigns;"
          f" {raw_rows:,} raw rows, {daily_rows:,} daily rows, median over {len(targets)}"
          f" orgs): rollup {rollup * 1000:.1f} ms, raw {raw * 1000:.1f} ms, speed-up"
          f" {raw / rollup:.1f}x end to end; in the engine: rollup {engine_rollup * 1000:.1f}"
          f" ms, raw {engine_raw * 1000:.1f} ms, speed-up {engine_raw / engine_rollup:.1f}x"
          f" (target >= 20x); same result: {same}")
    # Steady state: background merges eventually fold the daily parts into one row per
    # key (the reports never depend on it); and chDB's floor for any query.
    client.command("OPTIMIZE TABLE campaign_metrics_daily FINAL")
    merged = query_rows(client, "SELECT count() FROM campaign_metrics_daily")[0][0]
    engine_merged = timed(lambda org: query_rows(client, ENGINE.format(REPORT_ROLLUP), {
        "org": org, "start": first, "end": last}))
    floor = timed(lambda _org: query_rows(client, "SELECT 1"))
    print(f"after the daily parts are merged ({merged:,} daily rows): rollup"
          f" {engine_merged * 1000:.1f} ms in the engine, speed-up"
          f" {engine_raw / engine_merged:.1f}x; chDB's floor (SELECT 1): {floor * 1000:.1f} ms,"
          f" speed-up above it {(engine_raw - floor) / max(engine_merged - floor, 1e-6):.1f}x")


if __name__ == "__main__":
    main()

"""The demo dataset: a believable platform for presentations, deterministic.

Three organizations with a user of every role, connectors for several DSPs,
campaigns in every status, 90 days of hourly metrics in ClickHouse (rolled up
hourly and daily by the materialized views), PostgreSQL's daily
``campaign_metrics`` synced from ClickHouse (so the stores agree to the
cent), notifications, audit history, and a few sessions and queued jobs in
Redis.

Same ``seed`` and ``today``, same data: ids are UUIDv5 of names, random
values come from ``random.Random(seed)``, bcrypt hashes use a fixed salt
(demo passwords are public anyway) and timestamps derive from ``today``.
Connector credentials are encrypted with :mod:`platformdb.secrets` under
``PLATFORMDB_SECRET_KEYS``, else the public development key
(:data:`platformdb.ops.seed.DEV_SECRET_KEYS`); their ciphertexts differ from run
to run (fresh data keys and nonces), their clear text does not.
Re-running replaces the demo organizations' data instead of adding to it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from platformdb import secrets
from platformdb.errors import when_interrupted
from platformdb.ops.context import Context, context
from platformdb.ops.seed.base import SeedReport, row_counts, seed_keyring
from platformdb.postgres import connect
from platformdb.stores.postgres.partitions import DATE_PARTITIONED
from platformdb.types import Endpoints

NAMESPACE = uuid.UUID("5eed0000-0000-4000-8000-00000000de30")
# the hash of "Demo#2026"
PASSWORD_HASH = "$2b$10$platformdbdemoseedsalev/B8RMUPm7IvEbP08PBcHII9g8eTWUC"  # noqa: S105 - bcrypt hash of a documented demo password
DAYS = 90
ROLES = ("owner", "admin", "campaign_manager", "analyst", "viewer")
STATUSES = ("draft", "pending_approval", "active", "paused", "completed", "archived")
ORGS = (
    ("Acme Retail", "acme-retail", ("dv360", "the_trade_desk", "amazon_dsp")),
    ("Globex Media", "globex-media", ("dv360", "xandr")),
    ("Initech Travel", "initech-travel", ("the_trade_desk", "google_ads")),
)
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Linus")
PRODUCTS = ("Spring Sale", "Brand Lift", "Holiday Push", "Retargeting", "App Installs",
            "Summer Launch", "Loyalty", "Prospecting")


def ident(*parts: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join(parts))


def demo_org_ids() -> list[uuid.UUID]:
    return [ident("org", slug) for _, slug, _ in ORGS]


def plan(seed: int, today: dt.date) -> dict[str, list[tuple[Any, ...]]]:
    """Every PostgreSQL row of the demo, and the raw metrics, from ``seed`` and ``today``."""
    rng = random.Random(seed)  # noqa: S311 - deterministic demo data, not security
    start = today - dt.timedelta(days=DAYS)
    base = dt.datetime.combine(start, dt.time(9), dt.UTC)
    rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in (
        "organizations", "users", "user_roles", "dsp_connectors", "campaigns", "notifications",
        "raw")}
    for org_name, slug, dsps in ORGS:
        org = ident("org", slug)
        rows["organizations"].append((org, org_name, slug, "active", base))
        users = []
        for index, role in enumerate(ROLES):
            user = ident("user", slug, role)
            first = FIRST_NAMES[(index + len(slug)) % len(FIRST_NAMES)]
            rows["users"].append((org, user, f"{first.lower()}.{role}@{slug}.demo",
                                  PASSWORD_HASH, f"{first} ({role.replace('_', ' ')})", base))
            rows["user_roles"].append((org, user, role, base))
            users.append(user)
        connectors = []
        for dsp in dsps:
            connector = ident("connector", slug, dsp)
            rows["dsp_connectors"].append((org, connector, f"{org_name} {dsp.upper()}", dsp,
                                           "active", f"acct-{rng.randint(10_000, 99_999)}", base))
            connectors.append((connector, dsp))
        for index, status in enumerate(STATUSES * 2):
            campaign = ident("campaign", slug, str(index))
            connector, dsp = connectors[index % len(connectors)]
            begins = start + dt.timedelta(days=rng.randint(0, 20))
            rows["campaigns"].append((
                org, campaign, connector, f"io-{index:04d}",
                f"{PRODUCTS[index % len(PRODUCTS)]} {today.year} #{index + 1}", status,
                Decimal(rng.randrange(5_000, 250_000, 500)), "USD", begins,
                begins + dt.timedelta(days=rng.randint(30, 120)), users[2], base))
            if status in ("active", "paused", "completed"):
                rows["raw"].extend(_hourly(rng, org, campaign, dsp, start, today, status))
        for user_index, user in enumerate(users):
            for n in range(2):
                rows["notifications"].append((
                    org, ident("notification", slug, str(user_index), str(n)), user,
                    ("email", "in_app")[n], ("budget_alert", "weekly_report")[n],
                    Jsonb({"subject": ("Budget 80% spent", "Your weekly report")[n]}),
                    ("sent", "pending")[n], base + dt.timedelta(days=n)))
    return rows


def _hourly(rng: random.Random, org: uuid.UUID, campaign: uuid.UUID, dsp: str, start: dt.date,
            today: dt.date, status: str) -> list[tuple[Any, ...]]:
    """One raw row per hour; a daily curve, a weekly rhythm and noise."""
    out: list[tuple[Any, ...]] = []
    scale = rng.uniform(0.5, 3.0)
    last = today if status == "active" else start + dt.timedelta(days=rng.randint(40, 80))
    hour = dt.datetime.combine(start, dt.time(0), dt.UTC)
    end = dt.datetime.combine(last, dt.time(0), dt.UTC)
    while hour < end:
        curve = 0.3 + (0.7 if 8 <= hour.hour <= 22 else 0.0) * (1.2 if hour.weekday() < 5 else 0.8)
        impressions = int(rng.uniform(400, 1600) * curve * scale)
        clicks = int(impressions * rng.uniform(0.002, 0.02))
        conversions = int(clicks * rng.uniform(0.0, 0.15))
        spend = (Decimal(impressions) * Decimal(rng.randint(150, 900)) / 100_000).quantize(
            Decimal("0.01"))
        revenue = (spend * Decimal(rng.randint(50, 400)) / 100).quantize(Decimal("0.01"))
        out.append((hour, org, campaign, dsp, impressions, clicks, conversions, spend, revenue))
        hour += dt.timedelta(hours=1)
    return out


def seed_demo(target: Context | Endpoints, seed: int = 2026,
              today: dt.date | None = None) -> Any:
    """Write the demo (replacing an earlier one) and report what each store now holds:
    PostgreSQL's row counts and the demo's ClickHouse rows as stored (the raw table keeps
    90 days; older hours live on in the hourly and daily rollups)."""
    ctx = context(target)
    today = today or dt.datetime.now(dt.UTC).date()
    url = ctx.url("postgresql")
    rows = plan(seed, today)
    orgs = demo_org_ids()
    with when_interrupted("the demo may be partly written: run `platformdb seed demo` again "
                          "(it replaces the demo organizations' data)"):
        with ctx.progress.task("seed demo: postgresql"):
            _write_postgres(url, rows, orgs, seed_keyring(ctx.secret_keys), today)
        report = SeedReport("demo")
        with ctx.progress.task("seed demo: clickhouse and the daily sync"):
            note, stored = _write_clickhouse(ctx.url("clickhouse"), url, rows["raw"], orgs,
                                             today)
        report.notes.append(note)
        report.notes.append(_write_redis(ctx.url("redis"), rows))
    with connect(url) as conn:
        report.counts = row_counts(conn)
    report.counts.update({f"clickhouse {table}": n for table, n in stored.items()})
    return report


def demo_credentials(keyring: secrets.KeyRing, org: uuid.UUID, connector: uuid.UUID,
                     dsp: str) -> tuple[bytes, str]:
    """A connector's (made-up) API credentials, encrypted as a service would store them."""
    plain = json.dumps({"client_id": f"demo-{dsp}-client",
                        "client_secret": f"demo-only-{connector.hex[:12]}"}, sort_keys=True)
    sealed = secrets.encrypt(keyring, plain.encode(), org_id=org, record_id=connector)
    return sealed.ciphertext, sealed.key_id


def _months(today: dt.date) -> tuple[dt.date, int]:
    """The first month the demo's dates fall in, and how many months they span."""
    first = (today - dt.timedelta(days=DAYS)).replace(day=1)
    return first, (today.year - first.year) * 12 + today.month - first.month + 1


def _write_postgres(url: str, rows: dict[str, list[tuple[Any, ...]]],
                    orgs: list[uuid.UUID], keyring: secrets.KeyRing, today: dt.date) -> None:
    with connect(url) as conn, conn.transaction():
        # the months the demo's metrics and audit rows fall in, so none of them lands in a
        # default partition (the maintenance function creates only this month and ahead)
        first, months = _months(today)
        for table in DATE_PARTITIONED:
            conn.execute("SELECT ensure_date_partitions(%s, %s, %s)", (table, first, months))
        conn.execute("DELETE FROM organizations WHERE id = ANY(%s)", (orgs,))  # re-run: replace
        conn.execute("DELETE FROM audit_logs WHERE org_id = ANY(%s)", (orgs,))
        cur = conn.cursor()
        cur.executemany("INSERT INTO organizations (id, name, slug, status, created_at)"
                        " VALUES (%s, %s, %s, %s, %s)", rows["organizations"])
        cur.executemany("INSERT INTO users (org_id, id, email, password_hash, name, created_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)", rows["users"])
        cur.executemany("INSERT INTO user_roles (org_id, user_id, role, created_at)"
                        " VALUES (%s, %s, %s, %s)", rows["user_roles"])
        cur.executemany("INSERT INTO dsp_connectors (org_id, id, name, dsp_type, status,"
                        " external_account_id, created_at, credentials_encrypted,"
                        " credentials_key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(*row, *demo_credentials(keyring, row[0], row[1], row[3]))
                         for row in rows["dsp_connectors"]])
        cur.executemany("INSERT INTO campaigns (org_id, id, dsp_connector_id, external_id, name,"
                        " status, budget, currency, start_date, end_date, created_by, created_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        rows["campaigns"])
        cur.executemany("INSERT INTO notifications (org_id, id, user_id, channel, template,"
                        " payload, status, sent_at, created_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s,"
                        " CASE WHEN %s = 'sent' THEN %s END, %s)",
                        [(*r[:7], r[6], r[7], r[7]) for r in rows["notifications"]])
        for org, user, *_ in rows["users"][::5]:  # an owner's sign-ins, for the audit trail
            conn.execute("SELECT set_tenant(%s, %s)", (org, user))
            conn.execute("SELECT log_audit_event('LOGIN', 'users', %s)", (str(user),))


def _write_clickhouse(clickhouse_url: str, url: str, raw: list[tuple[Any, ...]],
                      orgs: list[uuid.UUID], today: dt.date) -> tuple[str, dict[str, int]]:
    from platformdb import clickhouse
    from platformdb.clickhouse.writer import RAW, MetricsWriter
    from platformdb.ops.etl import sync_daily

    with clickhouse.connect(clickhouse_url) as client:
        for table in ("campaign_metrics_raw", "campaign_metrics_hourly", "campaign_metrics_daily"):
            client.command("DELETE FROM {table:Identifier} WHERE org_id IN {orgs:Array(UUID)}",
                           parameters={"table": table, "orgs": orgs})
        names = [c.name for c in RAW]
        written = MetricsWriter(client, known_orgs=orgs).write_raw(
            [dict(zip(names, row, strict=True)) for row in raw])
        report = sync_daily(client, url, today - dt.timedelta(days=DAYS), today)
        stored = {table: int(clickhouse.rows(
            client, "SELECT count() FROM {table:Identifier} WHERE org_id IN {orgs:Array(UUID)}",
            {"table": table, "orgs": orgs})[0][0])
            for table in ("campaign_metrics_raw", "campaign_metrics_hourly",
                          "campaign_metrics_daily")}
    kept = stored["campaign_metrics_raw"]
    past = f" ({written - kept} older than the raw table's 90-day TTL)" if kept < written else ""
    return (f"clickhouse: {kept} hourly raw rows stored{past}; postgresql: {report.written} "
            "daily rows synced from the rollup"), stored


def _write_redis(redis_url: str, rows: dict[str, list[tuple[Any, ...]]]) -> str:
    from platformdb.redis import JobQueue, SessionStore
    from platformdb.redis.client import connect as redis_connect

    client = redis_connect(redis_url)
    try:
        sessions = SessionStore(client, idle_ttl=7 * 86400, absolute_ttl=30 * 86400)
        for org, user, *_ in rows["users"][::5]:
            sessions.revoke_all(str(user), org_id=str(org))  # re-run: replace, not add
            sessions.create(str(user), {"demo": True}, org_id=str(org),
                            session_id=ident("session", str(user)).hex)
        queue = JobQueue(client, "etl")
        for org, campaign, *_ in rows["campaigns"][:6]:
            queue.enqueue({"task": "dsp_import", "campaign_id": str(campaign)}, org_id=str(org),
                          job_id=ident("job", str(campaign)).hex)
    finally:
        client.close()
    return "redis: sessions for each organization's owner, 6 queued etl jobs"

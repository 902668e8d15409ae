"""monitoring/: the alert rules pass promtool and their unit tests, and every metric the rules
and the Grafana dashboard name is one a live exporter serves.

promtool comes from Debian's `prometheus` package (.ci/run installs it where apt is
available); without it the promtool tests say so and skip.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.client import Redis

from platformdb import binaries, embedded
from platformdb.ops import backup as stores
from platformdb.ops import exporter
from platformdb.ops.stats import StatsConfig
from platformdb.redis import Cache, JobQueue, Limit, RateLimiter, SessionStore, connect, functions
from platformdb.types import Endpoints
from tests.redis.helpers import delete_prefix

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERT_TESTS = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "grafana" / "platformdb.json"
PROMTOOL = binaries.promtool()
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed (apt-get install prometheus)")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "and", "or", "unless", "inf", "nan"}
PROMETHEUS_OWN = {"up"}  # Prometheus' own series of each scrape


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        follows = text[match.end():].lstrip()
        if follows.startswith("(") or name.lower() in PROMQL_WORDS:
            continue  # a function or an aggregation, or a keyword
        names.add(name)
    return names


def test_metric_names_reads_promql_as_meant() -> None:
    assert metric_names('sum by (queue, state) (rate(platformdb_a_total{event="x y"}[5m]))'
                        ' / on(queue) group_left platformdb_b > 2 * 3600') == {
        "platformdb_a_total", "platformdb_b"}
    assert metric_names('time() - platformdb_c{store=~"a|b"} > 26 * 3600') == {"platformdb_c"}
    assert metric_names("count(platformdb_d == 0) or vector(0)") == {"platformdb_d"}


def alert_expressions() -> dict[str, str]:
    yaml = pytest.importorskip("ruamel.yaml")
    document = yaml.YAML(typ="safe").load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"]
            for rule in group["rules"]}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [target["expr"] for target in inner.get("targets", [])]
    return found


# ------------------------------------------------------------------ promtool


@needs_promtool
def test_promtool_finds_the_alert_rules_valid() -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "WARNING" not in result.stdout + result.stderr


@needs_promtool
def test_every_alert_fires_on_a_broken_platform_and_not_on_a_healthy_one() -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "test", "rules", ALERT_TESTS.name], cwd=MONITORING,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_cover_every_alert_both_ways() -> None:
    yaml = pytest.importorskip("ruamel.yaml")
    tests = yaml.YAML(typ="safe").load(ALERT_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(alert_expressions())
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


# ------------------------------------------------------------------ against a live scrape


@pytest.fixture
def populated(migrated_url: str, redis_url: str, stack_home: Path, tmp_path: Path
              ) -> Iterator[tuple[Endpoints, StatsConfig]]:
    """Endpoints where every family has something to show: a backup, a sync run, a queue,
    counted rate-limit decisions and cache lookups, a session, PgBouncer when installed."""
    org = uuid.uuid4()
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (id, name, slug) VALUES (%s, 'O', %s)",
                     (org, f"o-{org.hex[:8]}"))
        conn.execute("INSERT INTO etl_jobs (org_id, job_type, status, params) VALUES"
                     " (%s, 'sync_daily', 'succeeded', '{\"from\": \"2026-01-05\","
                     " \"to\": \"2026-01-05\"}')", (org,))
    backups = tmp_path / "backups"
    stores.backup(Endpoints(postgres=migrated_url, clickhouse=None, redis=None), ["postgresql"],
                  backups)
    client = connect(redis_url)
    assert isinstance(client, Redis)
    functions.load(client)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    JobQueue(client, "etl", prefix=prefix).enqueue({}, org_id="org_1")
    limiter = RateLimiter(client, Limit(5, 60), prefix=prefix)
    limiter.allow("org_1", "dv360")
    limiter.flush_stats()
    cache = Cache(client, "campaign", prefix=prefix)
    cache.get("1", org_id="org_1")
    cache.flush_stats()
    SessionStore(client, prefix=prefix).create("user_1", org_id="org_1")
    bouncer = embedded.EmbeddedPgBouncer(stack_home)
    if bouncer.pid() is not None:  # a pooled client, so its pool has series to show
        # (the stack's own database: migrated_url may be on the second target's server)
        with psycopg.connect(bouncer.url("svc_api", "platform_dev"),
                             prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
    found = Endpoints(postgres=migrated_url, clickhouse=f"chdb://{tmp_path / 'ch'}",
                      redis=redis_url,
                      pgbouncer=bouncer.admin_url() if bouncer.pid() is not None else None)
    yield found, StatsConfig(backup_dir=backups, redis_prefix=prefix)
    delete_prefix(client, prefix)
    client.close()


def served(found: Endpoints, config: StatsConfig) -> set[str]:
    text = exporter.render(found, config)
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


@pytest.mark.slow
def test_alerts_and_dashboard_name_only_metrics_the_exporter_serves(
        populated: tuple[Endpoints, StatsConfig]) -> None:
    found, config = populated
    names = served(found, config)
    wanted: dict[str, set[str]] = {}
    for alert, expr in alert_expressions().items():
        for name in metric_names(expr):
            wanted.setdefault(name, set()).add(f"alert {alert}")
    for expr in dashboard_expressions():
        for name in metric_names(expr):
            wanted.setdefault(name, set()).add("dashboard")
    if found.pgbouncer is None:  # without a pgbouncer binary its panels cannot be checked
        wanted = {n: w for n, w in wanted.items() if not n.startswith("platformdb_pgbouncer_")}
    missing = {name: sorted(where) for name, where in wanted.items()
               if name not in names and name not in PROMETHEUS_OWN}
    assert missing == {}
    assert len(wanted) >= 20  # the parser found the expressions' metrics at all

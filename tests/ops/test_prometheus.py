"""The exporter fits Prometheus: `promtool check metrics` is clean and a real server scrapes it.

promtool and prometheus come from Debian's `prometheus` package (.ci/run installs
it where apt is available); without them these tests say so and skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from platformdb import binaries
from platformdb.embedded import free_port
from platformdb.ops import exporter
from platformdb.types import Endpoints

PROMTOOL = binaries.promtool()
PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def endpoints(migrated_url: str, redis_url: str, tmp_path: Path) -> Endpoints:
    return Endpoints(postgres=migrated_url, clickhouse=f"chdb://{tmp_path / 'ch'}",
                     redis=redis_url)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.slow
def test_promtool_finds_nothing_to_complain_about(endpoints: Endpoints) -> None:
    text = exporter.render(endpoints)
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


@pytest.mark.slow
def test_counters_are_counters_and_units_are_base_units(endpoints: Endpoints) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exporter.render(endpoints)):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                assert family.type == "counter", sample.name
        words = set(family.name.split("_"))
        assert not words & {"ms", "us", "ns", "kb", "mb", "gb", "pct"}, family.name


@pytest.fixture
def served(endpoints: Endpoints) -> Iterator[int]:
    port = free_port()
    server, thread = exporter.start(endpoints, port)
    try:
        yield port
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.skipif(PROMETHEUS is None,
                    reason="prometheus not installed (apt-get install prometheus)")
@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_exporter(served: int, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        # a scrape on a busy machine can take seconds (the exporter reads every store)
        "global: {scrape_interval: 5s, scrape_timeout: 5s}\n"
        "scrape_configs:\n"
        f"  - job_name: platformdb\n    static_configs: [{{targets: ['127.0.0.1:{served}']}}]\n")
    assert PROMETHEUS is not None
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        values: dict[str, str] = {}
        while time.monotonic() < deadline and len(values) < 2:
            for query in ('up{job="platformdb"}', 'platformdb_up{store="postgresql"}'):
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/api/v1/query?query={quote(query)}",
                            timeout=5) as response:
                        result = json.loads(response.read())["data"]["result"]
                except OSError:
                    continue
                if result:
                    values[query] = result[0]["value"][1]
            time.sleep(0.5)  # polling a real server until its first scrape lands
        assert values == {'up{job="platformdb"}': "1", 'platformdb_up{store="postgresql"}': "1"}
    finally:
        process.terminate()
        process.wait(timeout=30)

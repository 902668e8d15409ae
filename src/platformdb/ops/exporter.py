"""``platformdb exporter``: the platform's metrics in Prometheus text format.

Each scrape reads every source of :data:`platformdb.ops.stats.SOURCES` afresh (the
stores' key metrics and the domain metrics) and exposes them as
``platformdb_<store or domain>_<metric>``: gauges, and counters ending in
``_total``, in base units (seconds, bytes). Besides:

- ``platformdb_up{store=...}``: 0 for a store whose key metrics could not be read;
- ``platformdb_scrape_collector_success{collector=...}`` and
  ``platformdb_scrape_collector_duration_seconds{collector=...}`` for every
  source (node_exporter's convention): a domain source that fails shows here,
  and the others still report.

What postgres_exporter, redis_exporter and ClickHouse's own ``/metrics`` serve
(server internals) is left to them: docs/OPERATIONS.md runs them side by side.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from platformdb.errors import ConfigError, Hint
from platformdb.ops.context import Context, context
from platformdb.ops.stats import SourceResult, StatsConfig, run
from platformdb.stores import registry
from platformdb.types import Endpoints, Metric


class PlatformCollector(Collector):
    """Collects on every scrape; a failing source shows as ``..._success 0``, never an error."""

    def __init__(self, target: Context | Endpoints, stores: tuple[str, ...] | None = None,
                 config: StatsConfig | None = None) -> None:
        self.ctx = context(target)
        self.stores = registry.names() if stores is None else stores
        self.config = config or StatsConfig()  # one per exporter: its memo spans scrapes
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Family]:
        with self._lock:  # chDB opens its path in one thread at a time
            results = run(self.ctx, list(self.stores), self.config)
        yield from scrape_families(results, self.stores)
        metrics = [metric for result in results for metric in result.metrics]
        yield from families(metrics)


def scrape_families(results: list[SourceResult], stores: tuple[str, ...]) -> Iterator[Family]:
    """``platformdb_up`` per store and the success and duration of every source."""
    failed = {r.source.store for r in results if r.source.own and r.error is not None}
    up = GaugeMetricFamily("platformdb_up", "1 when the store answered the last scrape",
                           labels=["store"])
    for store in stores:
        up.add_metric([store], 0.0 if store in failed else 1.0)
    yield up
    success = GaugeMetricFamily("platformdb_scrape_collector_success",
                                "1 when the source of metrics could be read in the last scrape",
                                labels=["collector"])
    duration = GaugeMetricFamily("platformdb_scrape_collector_duration_seconds",
                                 "how long reading the source took in the last scrape",
                                 labels=["collector"], unit="seconds")
    for result in results:
        success.add_metric([result.source.name], 0.0 if result.error else 1.0)
        duration.add_metric([result.source.name], round(result.seconds, 6))
    yield success
    yield duration


def families(metrics: list[Metric]) -> Iterator[Family]:
    """Prometheus families: ``platformdb_<store>_<name>``; counters end in ``_total``."""
    grouped: dict[str, list[Metric]] = {}
    for metric in metrics:
        grouped.setdefault(f"platformdb_{metric.store}_{metric.name}", []).append(metric)
    for name, items in sorted(grouped.items()):
        label_names = sorted({key for item in items for key in item.labels})
        kind = CounterMetricFamily if items[0].kind == "counter" else GaugeMetricFamily
        family = kind(name, items[0].help, labels=label_names, unit=_unit(name, items[0].unit))
        for item in items:
            family.add_metric([item.labels.get(key, "") for key in label_names], item.value)
        yield family


def _unit(name: str, unit: str) -> str:
    """The OpenMetrics unit when the name carries it (base units only: seconds, bytes)."""
    return unit if unit in ("seconds", "bytes") and name.endswith(f"_{unit}") else ""


def collector_registry(target: Context | Endpoints,
                       config: StatsConfig | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PlatformCollector(target, config=config))
    return reg


def render(target: Context | Endpoints, config: StatsConfig | None = None) -> str:
    """One scrape's output as Prometheus text."""
    return generate_latest(collector_registry(target, config)).decode()


def start(target: Context | Endpoints, port: int, addr: str = "127.0.0.1",
          config: StatsConfig | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` in a background thread; stop with ``shutdown()``.

    A port out of range, in use, or an address this machine does not have is a
    :class:`~platformdb.errors.ConfigError` saying so."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    try:
        return start_http_server(port, addr=addr, registry=collector_registry(target, config))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot serve metrics on {addr}:{port}: the port is in use "
                              "(another exporter?)",
                              hint=Hint(flag="--port PORT", does="to serve on another port")
                              ) from exc
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: "
                          f"{exc.strerror or exc}") from exc


def serve(target: Context | Endpoints, port: int, addr: str = "127.0.0.1",
          config: StatsConfig | None = None,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve ``/metrics`` on ``addr:port`` until interrupted; ``ready`` is told the address
    once the port is bound (so nothing claims to serve before it does)."""
    server, thread = start(target, port, addr, config)
    try:
        if ready is not None:
            ready(f"http://{addr}:{port}/metrics")
        thread.join()
    finally:
        server.shutdown()

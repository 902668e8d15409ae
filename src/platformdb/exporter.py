"""``platformdb exporter``: the key metrics in Prometheus text format.

Each scrape collects fresh numbers from every store (see :mod:`platformdb.stats`)
and exposes them as gauges named ``platformdb_<store>_<metric>``, plus
``platformdb_up{store=...}`` which is 0 for a store that could not be read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from platformdb.stats import collect
from platformdb.types import STORE_NAMES, Endpoints, Metric


class PlatformCollector(Collector):
    """Collects on every scrape; a failing store turns into ``platformdb_up 0``."""

    def __init__(self, endpoints: Endpoints, stores: tuple[str, ...] = STORE_NAMES) -> None:
        self.endpoints = endpoints
        self.stores = stores
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Family]:
        with self._lock:  # chDB opens its path in one thread at a time
            metrics, errors = collect(self.endpoints, list(self.stores))
        failed = {line.split(":", 1)[0] for line in errors}
        up = GaugeMetricFamily("platformdb_up", "1 when the store answered the last scrape",
                               labels=["store"])
        for store in self.stores:
            up.add_metric([store], 0.0 if store in failed else 1.0)
        yield up
        yield from families(metrics)


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


def registry(endpoints: Endpoints) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PlatformCollector(endpoints))
    return reg


def render(endpoints: Endpoints) -> str:
    """One scrape's output as Prometheus text."""
    return generate_latest(registry(endpoints)).decode()


def start(endpoints: Endpoints, port: int, addr: str = "127.0.0.1"
          ) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` in a background thread; stop with ``shutdown()``."""
    return start_http_server(port, addr=addr, registry=registry(endpoints))


def serve(endpoints: Endpoints, port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``addr:port`` until interrupted."""
    server, thread = start(endpoints, port, addr)
    try:
        thread.join()
    finally:
        server.shutdown()

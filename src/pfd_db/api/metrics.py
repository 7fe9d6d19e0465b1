"""The server's Prometheus metrics: one registry per app, never the global one.

:class:`Metrics` (``app.state.metrics``) counts every HTTP request by route
template, method and status, times it in a histogram, and reads at each scrape
the gauges that live elsewhere: connections in use in the engine's pool, the
request log's depth, and its failed flushes and dropped rows.
``GET /metrics`` (:mod:`pfd_db.api.routes.metrics`) renders it for admin keys
or for the scrape addresses of ``PFD_DB_SERVER_METRICS_ADDRESSES``.

The figures are per process: with several workers, each serves its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from pfd_db.engine import pool_status

if TYPE_CHECKING:
    from pfd_db.api.request_log import RequestLog

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of :meth:`Metrics.render`'s text."""
UNMATCHED = "(unmatched)"
"""The route of a request that matched no route (never its raw path)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Metrics:
    """An app's metrics: counters and a histogram fed by the timing middleware,
    gauges read from ``engine`` and ``request_log`` at each scrape.

    ``scrape_addresses``: comma-separated addresses or networks (CIDR) that may
    read ``/metrics`` without a key (none by default)."""

    def __init__(self, engine: Engine, request_log: RequestLog, scrape_addresses: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.scrape_networks = parse_networks(scrape_addresses)
        self.requests = Counter(
            "pfd_db_http_requests",
            "HTTP requests served, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "pfd_db_http_request_duration_seconds",
            "Time from a request's start to the end of its response, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(engine, request_log))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request (an unusual method is counted as ``OTHER``)."""
        method = method if method in METHODS else "OTHER"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def may_scrape(self, address: str | None) -> bool:
        """Whether ``address`` (the client's, after trusted proxies) may read the
        metrics without a key."""
        if not self.scrape_networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.scrape_networks)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list of addresses and CIDR networks (``*``:
    every address); ValueError naming the first entry that is neither."""
    networks: list[Network] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        if entry == "*":
            networks += [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is neither an address nor a network") from None
    return tuple(networks)


class _StateCollector(Collector):
    """The gauges and counters kept by others, read at each scrape."""

    def __init__(self, engine: Engine, request_log: RequestLog) -> None:
        self.engine = engine
        self.request_log = request_log

    def collect(self) -> Iterator[Metric]:
        pool = pool_status(self.engine)
        log = self.request_log
        yield GaugeMetricFamily(
            "pfd_db_db_connections_in_use",
            "Database connections checked out of the engine's pool.",
            value=pool["checked_out"],
        )
        yield GaugeMetricFamily(
            "pfd_db_db_pool_size", "Connections the engine's pool keeps.", value=pool["size"]
        )
        yield GaugeMetricFamily(
            "pfd_db_request_log_depth",
            "Request-log rows waiting in the buffer to be written.",
            value=log.depth,
        )
        yield CounterMetricFamily(
            "pfd_db_request_log_failed_flushes",
            "Flushes of the request log that failed (their rows were retried).",
            value=log.failed_flushes,
        )
        yield CounterMetricFamily(
            "pfd_db_request_log_dropped_rows",
            "Request-log rows lost: pushed out of a full buffer, refused, or left at shutdown.",
            value=log.dropped_rows,
        )
        yield CounterMetricFamily(
            "pfd_db_request_log_written_rows",
            "Request-log rows written to the database.",
            value=log.written_rows,
        )

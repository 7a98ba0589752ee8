"""Prometheus metrics, served on their own listener (``metrics.host``/``metrics.port``).

Counters and histograms count what this process did: Prometheus scrapes each daemon and sums.
``t2ctl_rate_limit_storage_up`` is this process's view of the rate-limit storage.
Gauges of shared state (jobs by state, deliveries by status) are read from the database at
each scrape, so every daemon reports the same fleet-wide figures: take ``max`` across them.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from t2ctl import db
from t2ctl.config import MetricsSettings
from t2ctl.errors import T2Error

# Latency buckets from a cached read (5 ms) to a Zoho call near its timeout (30 s).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

HTTP_REQUESTS = Histogram(
    "t2ctl_http_request_duration_seconds",
    "Partner API requests by route, method and status; _count counts them.",
    ["route", "method", "status"],
    buckets=_BUCKETS,
    registry=None,
)
JOBS = Histogram(
    "t2ctl_job_duration_seconds",
    "Job runs by task and outcome (done, retry, dead, lost): a failure is any but done.",
    ["task", "outcome"],
    buckets=_BUCKETS,
    registry=None,
)
ORDERS = Counter(
    "t2ctl_orders_finished_total",
    "Orders this process brought to FULFILLED, FAILED or CANCELLED.",
    ["status"],
    registry=None,
)
WEBHOOKS = Counter(
    "t2ctl_webhook_attempts_total",
    "Webhook delivery attempts by event and outcome: delivered, retrying, dead, or superseded "
    "(an operator acted on the delivery meanwhile).",
    ["event", "outcome"],
    registry=None,
)
ZOHO = Histogram(
    "t2ctl_zoho_request_duration_seconds",
    "Calls to Zoho by method, endpoint (ids as {id}) and HTTP status (error: no answer).",
    ["method", "endpoint", "status"],
    buckets=_BUCKETS,
    registry=None,
)
RATE_LIMIT_STORAGE_UP = Gauge(
    "t2ctl_rate_limit_storage_up",
    "1 while this process counts rate limits in server.rate_limit_storage; 0 while that is "
    "unreachable and it counts each key alone, in memory (always 1 with memory://).",
    registry=None,
)
RATE_LIMIT_STORAGE_UP.set(1)  # until a request finds it unreachable
RATE_LIMIT_FALLBACK = Counter(
    "t2ctl_rate_limit_fallback_requests_total",
    "Partner API requests whose rate limit this process counted alone, in memory, because "
    "server.rate_limit_storage was unreachable.",
    registry=None,
)
HTTP_CONNECTIONS_CLOSED = Counter(
    "t2ctl_http_connections_closed_total",
    "Connections the HTTP server closed to keep answering others: idle or slow (sending a "
    "request) at server.connection_limit, or read_timeout (a request slower than "
    "server.read_timeout).",
    ["reason"],
    registry=None,
)
_OWN = (
    HTTP_REQUESTS,
    HTTP_CONNECTIONS_CLOSED,
    JOBS,
    ORDERS,
    WEBHOOKS,
    ZOHO,
    RATE_LIMIT_STORAGE_UP,
    RATE_LIMIT_FALLBACK,
)
_ID = re.compile(r"/\d+(?=/|$)")


def zoho_endpoint(path: str) -> str:
    """``/salesorders/4600000123/status/confirmed`` as ``/salesorders/{id}/status/confirmed``:
    one series per endpoint, not per record."""
    return _ID.sub("/{id}", path)


def zoho_call(method: str, path: str, status: str, seconds: float) -> None:
    """Count and time one call to Zoho under its endpoint: the Zoho client's observer."""
    ZOHO.labels(method, zoho_endpoint(path), status).observe(seconds)


def connections_closed(reason: str, count: int) -> None:
    """Count connections the HTTP server closed to protect itself: its observer."""
    HTTP_CONNECTIONS_CLOSED.labels(reason).inc(count)


@dataclass(frozen=True)
class Reconciled:
    """The last routine reconcile run (the default window): when it finished (epoch
    seconds), and its drift by kind."""

    at: float
    drift: dict[str, int]


@dataclass(frozen=True)
class Gauges:
    """The shared state a scrape reports, as the daemon's wiring reads it."""

    jobs_by_task: dict[str, dict[str, int]]  # task → state → count
    oldest_due_seconds: float  # 0 when no job is waiting
    deliveries: dict[str, int]  # status → count
    reconciled: Reconciled | None = None  # None until reconcile has run


class DatabaseCollector(Collector):
    """Reads the shared state at scrape time; a database that is down is reported, not raised."""

    def __init__(self, read: Callable[[], Gauges]):
        self.read = read

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("t2ctl_database_up", "1 if the database answered this scrape.")
        try:
            found = self.read()
        except db.DRIVER_ERRORS:
            up.add_metric([], 0)
            yield up
            return
        finally:
            db.reset()  # each scrape runs on a thread of its own: give its connection back
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("t2ctl_jobs", "Jobs by task and state.", labels=["task", "state"])
        for task, counts in sorted(found.jobs_by_task.items()):
            for state, count in counts.items():
                jobs.add_metric([task, state], count)
        yield jobs
        age = GaugeMetricFamily(
            "t2ctl_job_oldest_due_age_seconds",
            "How long the oldest due, unclaimed job has waited (0: none waiting).",
        )
        age.add_metric([], found.oldest_due_seconds)
        yield age
        deliveries = GaugeMetricFamily(
            "t2ctl_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
        )
        for name, count in found.deliveries.items():
            deliveries.add_metric([name], count)
        yield deliveries
        if found.reconciled is not None:
            yield from _reconciled(found.reconciled)


def _reconciled(last: Reconciled) -> Iterator[Metric]:
    drift = GaugeMetricFamily(
        "t2ctl_reconcile_drift",
        "Drift the last routine reconcile (the last 30 days) found between the orders and "
        "Zoho's sales orders, by kind.",
        labels=["kind"],
    )
    for kind, count in last.drift.items():
        drift.add_metric([kind], count)
    yield drift
    at = GaugeMetricFamily(
        "t2ctl_reconcile_last_run_timestamp_seconds",
        "When the last routine reconcile finished (Unix time).",
    )
    at.add_metric([], last.at)
    yield at


@dataclass
class Listener:
    port: int
    server: WSGIServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(settings: MetricsSettings, gauges: Callable[[], Gauges]) -> Listener:
    """Start ``/metrics`` on a thread, reading the database's figures with ``gauges()`` at
    each scrape; T2Error if the address cannot be had."""
    registry = CollectorRegistry(auto_describe=False)  # no database read at registration
    for collector in (*_OWN, DatabaseCollector(gauges)):
        registry.register(collector)
    try:
        server, _thread = start_http_server(settings.port, settings.host, registry)
    except OSError as exc:
        raise T2Error(
            f"cannot listen for metrics on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc} (pass serve --metrics-port, set metrics.port, "
            "or metrics.enabled = false)"
        ) from exc
    return Listener(server.server_port, server)

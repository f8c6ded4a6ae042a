"""Prometheus metrics shared by every service, and the small HTTP server that exposes them.

The server answers ``/metrics`` (Prometheus text format), ``/healthz`` (the process is alive)
and ``/readyz`` (the service has said it is ready, e.g. its consumer got partitions).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

CONSUMED = Counter(
    "tomstream_messages_consumed_total", "Messages read from Kafka", ["service", "topic"]
)
STORED = Counter(
    "tomstream_messages_stored_total", "Messages whose data is durably stored", ["service", "topic"]
)
DEAD_LETTERED = Counter(
    "tomstream_messages_dead_lettered_total",
    "Messages sent to a dead-letter topic (undecodable or unstorable)",
    ["service", "topic"],
)
STORE_RETRIES = Counter(
    "tomstream_store_retries_total",
    "Batches whose store failed transiently and is retried (nothing committed meanwhile)",
    ["service"],
)
BATCH_SECONDS = Histogram(
    "tomstream_batch_store_seconds",
    "Time to store one batch durably",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "tomstream_batch_size_messages",
    "Messages per stored batch",
    ["service"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000),
)
CONSUMER_LAG = Gauge(
    "tomstream_consumer_lag_messages",
    "Messages behind the end of the partition (from librdkafka statistics)",
    ["service", "topic", "partition"],
)


class BatchHistogram:
    """A labelled histogram that takes a whole batch of observations at once.

    prometheus_client's Histogram takes one value per call, under a lock, with a Python loop
    over the buckets: ~1 µs, three times per classification message. This one sorts a batch
    into the buckets with numpy and is exposed as an ordinary histogram (``_bucket``,
    ``_count``, ``_sum``) through the registry's custom-collector interface.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = list(labelnames)
        self._bounds = np.asarray(sorted(buckets), dtype=float)
        self._edges = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # the `le` labels
        self._counts: dict[tuple[str, ...], np.ndarray] = {}  # per bucket, +Inf last
        self._sums: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, labels: Sequence[str], values: Sequence[float]) -> None:
        if not values:
            return
        array = np.asarray(values, dtype=float)
        # side="left": a value equal to a bound belongs to that bound's bucket (le).
        counts = np.bincount(
            np.searchsorted(self._bounds, array, side="left"), minlength=len(self._bounds) + 1
        )
        key = tuple(labels)
        with self._lock:
            if key in self._counts:
                self._counts[key] += counts
            else:
                self._counts[key] = counts
            self._sums[key] = self._sums.get(key, 0.0) + float(array.sum())

    def describe(self) -> list[HistogramMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = self._family()
        with self._lock:
            snapshot = [
                (key, counts.cumsum(), self._sums[key]) for key, counts in self._counts.items()
            ]
        for key, cumulative, total in snapshot:
            family.add_metric(
                list(key),
                [(edge, float(count)) for edge, count in zip(self._edges, cumulative, strict=True)],
                total,
            )
        yield family

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)


LAST_ERROR = Info("tomstream_last_error", "The latest error a service met and survived")


def record_error(service: str, message: str) -> None:
    """Remember the latest error, for ``tomstream status``."""
    LAST_ERROR.info(
        {"service": service, "time": f"{time.time():.0f}", "message": message.strip()[:300]}
    )


class _Ready:
    """The readiness flag served by /readyz."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self, ready: bool) -> None:
        if ready:
            self._event.set()
        else:
            self._event.clear()

    def __bool__(self) -> bool:
        return self._event.is_set()


READY = _Ready()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b'{"status": "ok"}', "application/json")
        elif path == "/readyz":
            ready = bool(READY)
            body = json.dumps({"status": "ok" if ready else "not ready"}).encode()
            self._reply(200 if ready else 503, body, "application/json")
        else:
            self._reply(404, b'{"status": "error", "error": "not found"}', "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would drown the service's own log."""


def serve_metrics(host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz from a daemon thread; port 0 picks a free port."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def record_librdkafka_stats(service: str, stats_json: str) -> None:
    """librdkafka ``stats_cb``: publish each assigned partition's consumer lag."""
    stats = json.loads(stats_json)
    for topic, topic_stats in stats.get("topics", {}).items():
        for partition, part in topic_stats.get("partitions", {}).items():
            lag = part.get("consumer_lag", -1)
            if partition != "-1" and lag >= 0:
                CONSUMER_LAG.labels(service, topic, partition).set(lag)

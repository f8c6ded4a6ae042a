"""``tomstream status``: each service's health, lag, rates and last error, from its /metrics.

The endpoints come from ``--endpoint NAME=URL`` options or, by default, from the file the demo
(or any supervisor) writes: ``<stack dir>/run/services.json``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 2.0


@dataclass
class ServiceStatus:
    name: str
    metrics_url: str
    healthy: bool = False
    ready: bool = False
    error: str | None = None  # why the endpoint could not be read
    lag: dict[str, float] = field(default_factory=dict)  # per topic
    consumed_per_s: dict[str, float] = field(default_factory=dict)  # per topic
    stored_total: float = 0.0
    dead_lettered_total: float = 0.0
    last_error: str | None = None


def endpoints_file(stack_dir: Path) -> Path:
    return stack_dir / "run" / "services.json"


def load_endpoints(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _per_topic(samples: list[tuple[str, dict[str, str], float]], name: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == name and "topic" in labels:
            totals[labels["topic"]] += value
    return dict(totals)


def collect(endpoints: Mapping[str, str], interval_s: float = 1.0) -> list[ServiceStatus]:
    """Read every endpoint twice, ``interval_s`` apart, to turn counters into rates."""
    statuses = {name: ServiceStatus(name, url) for name, url in endpoints.items()}
    first: dict[str, dict[str, float]] = {}
    for status in statuses.values():
        first[status.name] = _read(status)
    time.sleep(interval_s)
    for status in statuses.values():
        if status.error is None:
            second = _read(status)
            status.consumed_per_s = {
                topic: (count - first[status.name].get(topic, 0.0)) / interval_s
                for topic, count in second.items()
            }
    return list(statuses.values())


def _read(status: ServiceStatus) -> dict[str, float]:
    """Fill ``status`` from one scrape; return the consumed counters per topic."""
    base = status.metrics_url.removesuffix("/metrics")
    try:
        status.healthy = _get(base + "/healthz")[0] == 200
        status.ready = _get(base + "/readyz")[0] == 200
        code, text = _get(status.metrics_url)
    except (OSError, urllib.error.URLError) as error:
        status.error = f"down: {getattr(error, 'reason', error)}"
        return {}
    if code != 200:
        status.error = f"/metrics answered {code}"
        return {}
    samples = _samples(text)
    status.lag = _per_topic(samples, "tomstream_consumer_lag_messages")
    status.stored_total = sum(_per_topic(samples, "tomstream_messages_stored_total").values())
    status.dead_lettered_total = sum(
        _per_topic(samples, "tomstream_messages_dead_lettered_total").values()
    )
    for name, labels, _ in samples:
        if name == "tomstream_last_error_info":
            when = datetime.fromtimestamp(float(labels.get("time", "0")), UTC)
            status.last_error = f"{when:%H:%M:%S} {labels.get('message', '')}"
    return _per_topic(samples, "tomstream_messages_consumed_total")

"""Plots of a run, from what the services stored: ``tomstream report delays | throughput``.

The delay histograms are the DESC TOM's: for each broker and classifier, log10 of the seconds
from the alert's publication to our receipt of the classification (full), to the broker's
publication of it (broker), and from there to our receipt (TOM).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from tomstream.config import Settings
from tomstream.storage.postgres import Postgres

DELAYS = ("full", "broker", "tom")
_DELAY_SQL = """
SELECT c.broker_name, c.classifier_name,
       extract(epoch FROM m.ingested_at - m.elasticc_publish_time) AS full_s,
       extract(epoch FROM m.kafka_timestamp - m.elasticc_publish_time) AS broker_s,
       extract(epoch FROM m.ingested_at - m.kafka_timestamp) AS tom_s
FROM broker_message m JOIN classifier c USING (classifier_id)
"""
_LOG10_BINS = [x / 10 for x in range(-20, 61)]  # 10 ms … 11.6 days


@dataclass(frozen=True)
class DelayStats:
    broker: str
    classifier: str
    delay: str
    count: int
    p50_s: float
    p90_s: float
    p99_s: float


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def delays(settings: Settings, out: Path) -> list[DelayStats]:
    """Write ``delays.png`` (one row of histograms per classifier) and ``delays.csv``."""
    postgres = Postgres(settings.postgres_dsn, application_name="tomstream-report")
    try:
        rows = postgres.connection().execute(_DELAY_SQL).fetchall()
    finally:
        postgres.close()
    by_classifier: dict[tuple[str, str], dict[str, list[float]]] = {}
    for broker, classifier, *values in rows:
        series = by_classifier.setdefault((broker, classifier), {d: [] for d in DELAYS})
        for delay, value in zip(DELAYS, values, strict=True):
            if value is not None:
                series[delay].append(float(value))
    out.mkdir(parents=True, exist_ok=True)
    stats = [
        DelayStats(broker, classifier, delay, len(values), *_quantiles(sorted(values)))
        for (broker, classifier), series in sorted(by_classifier.items())
        for delay, values in series.items()
        if values
    ]
    with (out / "delays.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["broker", "classifier", "delay", "count", "p50_s", "p90_s", "p99_s"])
        for s in stats:
            writer.writerow([s.broker, s.classifier, s.delay, s.count, s.p50_s, s.p90_s, s.p99_s])
    _plot_delays(by_classifier, out / "delays.png")
    return stats


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    return tuple(_percentile(values, q) for q in (0.5, 0.9, 0.99))  # type: ignore[return-value]


def _plot_delays(by_classifier: dict[tuple[str, str], dict[str, list[float]]], path: Path) -> None:
    rows = max(1, len(by_classifier))
    fig, axes = plt.subplots(rows, 3, figsize=(12, 2.8 * rows), squeeze=False)
    for row, ((broker, classifier), series) in enumerate(sorted(by_classifier.items())):
        for col, delay in enumerate(DELAYS):
            ax = axes[row][col]
            logs = [math.log10(max(v, 1e-3)) for v in series[delay]]
            ax.hist(logs, bins=_LOG10_BINS, color="#3b6ea8")
            ax.set_title(f"{broker} / {classifier}: {delay} delay", fontsize=9)
            ax.set_xlabel("log10(delay / s)")
            ax.set_ylabel("messages")
    if not by_classifier:
        axes[0][0].text(0.5, 0.5, "no classifications stored", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_THROUGHPUT_SQL = {
    "alerts": "SELECT date_trunc('second', ingested_at), count(DISTINCT alert_id) "
    "FROM alert_receipt GROUP BY 1 ORDER BY 1",
    "classifications": "SELECT date_trunc('second', ingested_at), count(*) "
    "FROM broker_message GROUP BY 1 ORDER BY 1",
}


def throughput(settings: Settings, out: Path) -> dict[str, float]:
    """Write ``throughput.png`` and ``throughput.csv`` (per second); return the peak rates."""
    postgres = Postgres(settings.postgres_dsn, application_name="tomstream-report")
    try:
        conn = postgres.connection()
        series = {name: conn.execute(sql).fetchall() for name, sql in _THROUGHPUT_SQL.items()}
    finally:
        postgres.close()
    out.mkdir(parents=True, exist_ok=True)
    with (out / "throughput.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["what", "second", "count"])
        for name, points in series.items():
            writer.writerows([name, second.isoformat(), count] for second, count in points)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for name, points in series.items():
        if points:
            start = points[0][0]
            ax.plot(
                [(second - start).total_seconds() for second, _ in points],
                [count for _, count in points],
                marker=".",
                label=f"{name} stored per second",
            )
    ax.set_xlabel("seconds since the first")
    ax.set_ylabel("per second")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=90)
    plt.close(fig)
    return {name: max((c for _, c in points), default=0) for name, points in series.items()}

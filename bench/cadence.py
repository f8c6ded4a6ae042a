"""Cadence benchmark: latency from a status event to its trigger, streaming vs cron sweep.

1,000 active cadences (``ResumeCadenceAfterFailure``, no stop condition); the benchmark plays
the facility: it keeps one outstanding request per cadence and, at a fixed rate (500/s),
reports a terminal status for one of them (80 % COMPLETED, 20 % a failure: each makes the
cadence request a next observation). The latency of an event is

    Kafka append time of its trigger on ``cadence-triggers``
    minus Kafka append time of the status event on ``observation-status``

with both topics created with ``message.timestamp.type=LogAppendTime``, so both ends come from
the broker's clock. Two systems answer the same load, each in a deployment of its own:

* **streaming**: ``tomstream cadence run`` (the faust worker with its outbox relay) as a
  subprocess;
* **baseline** (the TOM Toolkit's way): every ``--cron-interval`` seconds a job takes the
  statuses reported since its last run (the toolkit polls the facility), records them, and
  sweeps every cadence with the same decision code (``Decider.sweep``); an outbox relay in the
  benchmark's process publishes the triggers.

Each deployment has its own database and topic prefix (``bench_<random>``), dropped at the end.
Usage::

    .venv/bin/python bench/cadence.py [--cadences 1000] [--rate 500] [--seconds 30]
        [--cron-interval 10] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tomstream.config import Settings, load_settings
from tomstream.outbox import OutboxRelay
from tomstream.services.cadence.config import load_config
from tomstream.services.cadence.service import (
    STATUS_TOPIC,
    TRIGGER_TOPIC,
    Decider,
    NewCadence,
    StatusEvent,
    Target,
    Trigger,
    create_cadence,
)
from tomstream.storage.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "cadence"
TARGET_P99_MS = 200.0
FAILURE_SHARE = 0.2


# ------------------------------------------------------------------------------ deployments


class Deployment:
    """A database and a topic prefix of their own, with LogAppendTime topics."""

    def __init__(self, base: Settings, label: str) -> None:
        self.base = base
        run_id = f"{label}_{uuid.uuid4().hex[:8]}"
        self.database = f"bench_{run_id}"
        dsn = urlunsplit(urlsplit(base.postgres_dsn)._replace(path=f"/{self.database}"))
        self.settings = base.model_copy(
            update={"postgres_dsn": dsn, "topic_prefix": f"bench-{run_id}-"}
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOMSTREAM_")}
        env.update(
            TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS=self.settings.kafka_bootstrap_servers,
            TOMSTREAM_POSTGRES_DSN=self.settings.postgres_dsn,
            TOMSTREAM_MONGODB_URI=self.settings.mongodb_uri,
            TOMSTREAM_TOPIC_PREFIX=self.settings.topic_prefix,
            TOMSTREAM_LOG_LEVEL="WARNING",
        )
        return env

    def __enter__(self) -> Deployment:
        with psycopg.connect(self.base.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        migrate(self.settings.postgres_dsn)
        admin = AdminClient(self.base.kafka_client_config())
        topics = [
            NewTopic(
                self.settings.topic(name),
                num_partitions=1,
                config={"message.timestamp.type": "LogAppendTime"},
            )
            for name in (STATUS_TOPIC, TRIGGER_TOPIC)
        ]
        for future in admin.create_topics(topics, operation_timeout=30).values():
            future.result(timeout=60)
        return self

    def __exit__(self, *_: object) -> None:
        with psycopg.connect(self.base.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        admin = AdminClient(self.base.kafka_client_config())
        prefix = self.settings.topic_prefix
        mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else ():
            future.result(timeout=60)


def create_cadences(settings: Settings, count: int) -> None:
    now = datetime.now(UTC)
    config = load_config()
    window = {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat()}
    with psycopg.connect(settings.postgres_dsn) as conn, conn.transaction():
        for index in range(count):
            new = NewCadence(
                facility="FAKE",
                parameters={"window": window},
                target=Target(name=f"bench-{index}", ra=(index * 0.36) % 360, dec=-10.0),
                strategy="ResumeCadenceAfterFailure",
                frequency_hours=24.0,
            )
            create_cadence(conn, config, new, now)


# -------------------------------------------------------------------------- the "facility"


@dataclass
class Measurement:
    name: str
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Facility:
    """Plays the facility: one outstanding request per cadence, statuses at a fixed rate."""

    def __init__(self, settings: Settings, cadence_ids: list[int], seed: int = 1) -> None:
        self._settings = settings
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._ready: list[str] = []  # request ids whose trigger arrived and not yet answered
        self._sent_at: dict[str, int] = {}  # request id answered -> status append time (ms)
        self._answered: dict[str, str] = {}  # expected next request id -> request answered
        self._arrived: dict[str, int] = {}  # request id -> trigger append time (ms)
        self._stop = threading.Event()
        self._expected_first = {f"cad{c}-1" for c in cadence_ids}
        self._producer = Producer({**settings.kafka_client_config(), "linger.ms": 1})
        self._collector = threading.Thread(target=self._collect, daemon=True)

    def _collect(self) -> None:
        consumer = Consumer(
            {
                **self._settings.kafka_client_config(),
                "group.id": uuid.uuid4().hex,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 5,
            }
        )
        consumer.subscribe([self._settings.topic(TRIGGER_TOPIC)])
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                trigger = Trigger.from_avro(message.value())
                with self._lock:
                    if trigger.request_id in self._arrived:
                        continue  # an at-least-once copy
                    self._arrived[trigger.request_id] = message.timestamp()[1]
                    self._ready.append(trigger.request_id)
        finally:
            consumer.close()

    def start(self) -> None:
        self._collector.start()

    def wait_first_triggers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._expected_first <= self._arrived.keys():
                    return
            time.sleep(0.2)
        raise RuntimeError("the first triggers did not all arrive")

    def drive(self, rate: float, seconds: float, measurement: Measurement) -> None:
        """Send terminal statuses at ``rate``/s for ``seconds``; record their append times."""
        topic = self._settings.topic(STATUS_TOPIC)
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            with self._lock:
                batch, self._ready = self._ready[:due], self._ready[due:]
            for request_id in batch:
                self._send(topic, request_id)
            sent += len(batch)
            self._producer.poll(0)
            time.sleep(0.002)
        self._producer.flush(30)
        measurement.sent = sent
        measurement.seconds = time.monotonic() - started
        if sent < rate * seconds * 0.95:
            measurement.notes.append(
                f"only {sent} events sent in {seconds:.0f} s: triggers came back too slowly "
                "to keep the rate"
            )

    def _send(self, topic: str, request_id: str) -> None:
        word = "COMPLETED" if self._random.random() >= FAILURE_SHARE else "NOT_ATTEMPTED"
        event = StatusEvent(
            request_id=request_id,
            facility="FAKE",
            observation_id=f"FAKE-{request_id}",
            status=word,
            event_time=datetime.now(UTC),
        )
        cadence, step = request_id.removeprefix("cad").split("-")
        self._answered[f"cad{cadence}-{int(step) + 1}"] = request_id

        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is None:
                with self._lock:
                    self._sent_at[request_id] = message.timestamp()[1]

        self._producer.produce(topic, event.to_avro(), key=request_id, on_delivery=delivered)

    def settle(self, measurement: Measurement, timeout_s: float) -> None:
        """Wait for the follow-ups of every event sent, then compute the latencies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._answered.keys() <= self._arrived.keys():
                    break
            time.sleep(0.2)
        self._stop.set()
        self._collector.join(10)
        for follow_up, answered in self._answered.items():
            if follow_up in self._arrived and answered in self._sent_at:
                latency = self._arrived[follow_up] - self._sent_at[answered]
                measurement.latencies_ms.append(float(latency))
            else:
                measurement.missing += 1


# ------------------------------------------------------------------------------- the runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float) -> None:
    """Until the worker's /readyz answers 200 (partitions assigned)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/readyz"
        with suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("the cadence worker did not become ready")


def run_streaming(base: Settings, args: argparse.Namespace) -> Measurement:
    measurement = Measurement("streaming: `tomstream cadence run` (faust + outbox relay)")
    with Deployment(base, "cadstream") as deployment:
        create_cadences(deployment.settings, args.cadences)
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "tomstream", "cadence", "run"],
            env={**deployment.env(), "TOMSTREAM_METRICS_PORT": str(port)},
            stderr=subprocess.DEVNULL if not args.verbose else None,
        )
        try:
            facility = Facility(deployment.settings, list(range(1, args.cadences + 1)))
            facility.start()
            facility.wait_first_triggers(180)
            wait_ready(port, 180)  # steady state: the worker has its partitions
            facility.drive(args.rate, args.seconds, measurement)
            facility.settle(measurement, 30)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    return measurement


def _record_statuses(conn: psycopg.Connection, events: list[StatusEvent]) -> None:
    """What the toolkit's cron job learns from polling the facility, written as it did."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE observation_record SET status = %s, reported_status = %s, "
            "observation_id = %s, status_time = %s WHERE request_id = %s",
            [(e.status, e.status, e.observation_id, e.event_time, e.request_id) for e in events],
        )


def _cron(settings: Settings, interval_s: float, stop: threading.Event, runs: list[float]) -> None:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic(STATUS_TOPIC)])
    decider = Decider(settings, load_config())
    pending: list[StatusEvent] = []
    next_run = time.monotonic() + interval_s
    try:
        with psycopg.connect(settings.postgres_dsn) as conn:
            while not stop.is_set():
                message = consumer.poll(0.05)
                if message is not None and message.error() is None:
                    pending.append(StatusEvent.from_avro(message.value()))
                if time.monotonic() < next_run:
                    continue
                started = time.monotonic()
                _record_statuses(conn, pending)
                pending = []
                decider.sweep()
                runs.append(time.monotonic() - started)
                next_run += interval_s
    finally:
        decider.close()
        consumer.close()


def run_baseline(base: Settings, args: argparse.Namespace) -> Measurement:
    measurement = Measurement(
        f"baseline: a cron job every {args.cron_interval:g} s polls statuses and sweeps "
        "every cadence (TOM Toolkit)"
    )
    with Deployment(base, "cadcron") as deployment:
        create_cadences(deployment.settings, args.cadences)
        relay = OutboxRelay(deployment.settings, poll_s=0.5).start()
        stop = threading.Event()
        runs: list[float] = []
        cron = threading.Thread(
            target=_cron,
            args=(deployment.settings, args.cron_interval, stop, runs),
            daemon=True,
        )
        cron.start()
        try:
            facility = Facility(deployment.settings, list(range(1, args.cadences + 1)))
            facility.start()
            facility.wait_first_triggers(180)
            facility.drive(args.rate, args.seconds, measurement)
            facility.settle(measurement, args.cron_interval * 3 + 30)
        finally:
            stop.set()
            cron.join(60)
            relay.stop()
        if runs:
            measurement.notes.append(
                f"{len(runs)} cron runs, each {min(runs):.2f} to {max(runs):.2f} s "
                "(record statuses + sweep)"
            )
    return measurement


# ------------------------------------------------------------------------------ reporting


def table(measurements: list[Measurement]) -> list[str]:
    lines = [
        "| system | events | rate (/s) | p50 (ms) | p99 (ms) | max (ms) | missing |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        rate = m.sent / m.seconds if m.seconds else 0.0
        worst = max(m.latencies_ms, default=float("nan"))
        lines.append(
            f"| {m.name} | {m.sent:,} | {rate:.0f} | {m.percentile(50):.0f} | "
            f"{m.percentile(99):.0f} | {worst:.0f} | {m.missing} |"
        )
    return lines


def section(measurements: list[Measurement], args: argparse.Namespace, command: str) -> str:
    streaming = measurements[0]
    p99 = streaming.percentile(99)
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Cadences: status event → trigger latency",
        "",
        "`bench/cadence.py`: "
        f"{args.cadences:,} active cadences; the benchmark plays the facility and reports a "
        f"terminal status (80 % COMPLETED, 20 % NOT_ATTEMPTED) for an outstanding request at "
        f"{args.rate:g}/s for {args.seconds:g} s. Latency = Kafka append time of the trigger on "
        "`cadence-triggers` minus the append time of the status event on "
        "`observation-status` (both topics `LogAppendTime`: one clock, the broker's).",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; Kafka, PostgreSQL and the services on the same machine; "
        f"load average before / after: {args.load_before:.1f} / {os.getloadavg()[0]:.1f}",
        "",
        *table(measurements),
        "",
        f"Target p99 < {TARGET_P99_MS:.0f} ms: **{verdict}** ({p99:.0f} ms).",
        "",
        *(f"- {m.name}: {note}" for m in measurements for note in m.notes),
        "",
        "The baseline runs the same decision code. A cadence's next request exists only after "
        "the next cron run, so the facility cannot keep the rate (it has nothing to answer), "
        "and the statuses it sends right after a run wait for the following one: nearly the "
        "whole interval. With statuses spread evenly in time the wait would be half the "
        "interval on average; the TOM Toolkit's cron runs every few minutes, not every 10 s.",
        "",
        "Latencies depend on what else the 2 CPUs do (the load average above): the services, "
        "Kafka, PostgreSQL and the benchmark itself share them, and other test runs may too.",
        f"<!-- bench:{SECTION}:end -->",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = DOCS) -> None:
    """Replace this benchmark's section between its markers (or append it), keep the rest."""
    current = path.read_text()
    markers = re.compile(
        rf"<!-- bench:{SECTION}:start -->.*?<!-- bench:{SECTION}:end -->\n?", re.DOTALL
    )
    updated, found = markers.subn(lambda _: text, current, count=1)
    path.write_text(updated if found else current.rstrip("\n") + "\n\n" + text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cadences", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="status events per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send them")
    parser.add_argument("--cron-interval", type=float, default=10.0, help="baseline period (s)")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    parser.add_argument("--verbose", action="store_true", help="show the worker's log")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    command = "python bench/cadence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    base = load_settings()
    runs: list[Callable[[Settings, argparse.Namespace], Measurement]] = [
        run_streaming,
        run_baseline,
    ]
    measurements = [run(base, args) for run in runs]
    print("\n".join(table(measurements)))
    for m in measurements:
        for note in m.notes:
            print(f"{m.name}: {note}")
    if args.write_docs:
        write_section(section(measurements, args, command.strip()))


if __name__ == "__main__":
    main()

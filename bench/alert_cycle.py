"""Alert-cycle benchmark: Avro decode, ingest and broker_poll rates against naive baselines.

One run on a synthetic ELAsTiCC2 (``elasticc.v0_9_1``) stream measures, on the same machine and
servers:

* bare decode: ``tomstream.avro.decode_alert`` over every payload, in memory (alerts/s), and
  decode + ``tomstream.services.ingest.alerts.alert_rows``;
* ingest: ``tomstream.services.ingest.service.run`` consuming the stream from Kafka into
  PostgreSQL and MongoDB (alerts/s; target ≥ 60 % of bare decode);
* a naive ingest baseline, as the DESC TOM wrote: one auto-committed INSERT per row and one
  Mongo insert per alert, on a sample;
* broker_poll: ``tomstream.services.broker_poll.service.run`` on two fake-broker classification
  messages per alert (messages/s; target ≥ 20,000/s);
* a naive broker_poll baseline: one auto-committed INSERT and one Mongo insert per message.

How the service rates are timed: the service runs in this process (its consumer in the main
thread); a watcher thread reads the service's own Prometheus counter
``tomstream_messages_stored_total`` (incremented once a batch is durably in both stores) every
20 ms. The rate is N / (time from calling ``run`` until the counter reaches N): it includes
start-up (connections, topic check, joining the consumer group, first fetch), then the watcher
stops the service (SIGINT, its own graceful shutdown), which is not counted. Afterwards every
count is checked exactly. The CPU time of this process and of the local stack's servers over
the same span is reported too (``/proc``), which shows where the machine's time went.

``--sample`` (stack sampling of the consumer loop, and of the store thread while the loop waits
for it) and ``--profile DIR`` (cProfile) say where
the consumer's wall time goes, for runs that miss a target.

Everything runs in a database, Mongo database and topic prefix of its own (``bench_<random>``),
dropped at the end (``--keep`` leaves them). Usage::

    .venv/bin/python bench/alert_cycle.py [--alerts 100000] [--naive-sample 5000] [--write-docs]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import platform
import pstats
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from bson import Binary
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError
from rich.console import Console
from rich.table import Table

from tomstream import avro
from tomstream.classification_reader import read_classification
from tomstream.config import Settings, load_settings
from tomstream.consumer import collector_tuned_for_batches
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer
from tomstream.logs import configure_logging
from tomstream.services.broker_poll import BATCH_SIZE as BROKER_POLL_BATCH_SIZE
from tomstream.services.broker_poll import service as broker_poll_service
from tomstream.services.broker_poll.archive import count_raw_messages
from tomstream.services.broker_poll.config import BrokerPollConfig, BrokerSource
from tomstream.services.fakebroker.classify import classification_messages
from tomstream.services.ingest import BATCH_SIZE as INGEST_BATCH_SIZE
from tomstream.services.ingest import service as ingest_service
from tomstream.services.ingest.alerts import AlertRows, alert_rows
from tomstream.services.sim.alerts import (
    FORCED_AFTER_FIRST_DETECTION_DAYS,
    FORCED_BEFORE_FIRST_DETECTION_DAYS,
    FULL_HISTORY_DAYS,
    MAX_EPOCHS_PER_OBJECT,
    SIM_VERSION,
)
from tomstream.storage.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
START_MARKER = "<!-- bench:alert_cycle:start -->"
END_MARKER = "<!-- bench:alert_cycle:end -->"

INGEST_TARGET_RATIO = 0.60  # ingest rate / bare decode rate
BROKER_POLL_TARGET = 20_000  # messages/s
WATCH_INTERVAL_S = 0.02

ALERT_TOPIC = "alerts-wfd"
CLASSIFICATION_TOPIC = "classifications"
BROKER = "fakebroker"

console = Console()


# ------------------------------------------------------------------------ synthetic stream

BANDS = "ugrizy"
OBJECT_ID_BASE = 1_000_000
SURVEY_START_MJD = 60_300.0
SURVEY_DAYS = 1_000.0
MJD_UNIX_EPOCH = 40_587.0


def _diaobject_fields() -> list[str]:
    schema = json.loads(avro.schema_path("elasticc.v0_9_1.diaObject").read_text())
    return [f["name"] for f in schema["fields"]]


@dataclass
class Stream:
    """The synthetic stream, in time order, with what ingest must end up storing."""

    payloads: list[bytes] = field(default_factory=list)  # encoded alerts, time order
    keys: list[bytes] = field(default_factory=list)  # diaObjectId
    alert_ids: list[int] = field(default_factory=list)
    diasource_ids: list[int] = field(default_factory=list)
    mjds: list[float] = field(default_factory=list)
    objects: int = 0
    sources: int = 0  # distinct diaSources (each alert's own detection)
    forced: int = 0  # distinct forced sources carried by some alert
    prv_sources: int = 0  # rows summed over alerts
    prv_forced: int = 0
    max_prv_forced: int = 0

    @property
    def alerts(self) -> int:
        return len(self.payloads)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.payloads))


def _object_alerts(
    rng: random.Random, index: int, n_alerts: int, fields: list[str]
) -> list[dict[str, Any]]:
    """The alert records of one object: a light curve in ugrizy, ``n_alerts`` detections.

    Epochs every 1-6 days: forced photometry from ~30 days before the first detection, then
    each detection followed by 0-3 epochs without detection. As in the DESC TOM, every epoch is
    a forced source and a detected epoch is also a diaSource with the same id.
    """
    object_id = OBJECT_ID_BASE + index
    ra = rng.uniform(0.0, 360.0)
    dec = math.degrees(math.asin(rng.uniform(-1.0, 0.2)))
    z = rng.uniform(0.02, 1.5)
    diaobject: dict[str, Any] = {name: None for name in fields}
    for name in fields:
        if name.startswith("hostgal"):
            if "_mag_" in name:
                diaobject[name] = rng.uniform(19.0, 27.0)
            elif "_magerr_" in name:
                diaobject[name] = rng.uniform(0.01, 0.5)
            elif name.endswith(("_ra", "_dec")):
                diaobject[name] = (ra if name.endswith("_ra") else dec) + rng.gauss(0, 1e-3)
            else:
                diaobject[name] = rng.uniform(0.0, 2.0)
    diaobject.update(
        diaObjectId=object_id,
        simVersion=SIM_VERSION,
        ra=ra,
        decl=dec,
        mwebv=rng.uniform(0.0, 0.3),
        mwebv_err=rng.uniform(0.0, 0.03),
        z_final=z,
        z_final_err=rng.uniform(0.001, 0.05),
    )
    first = SURVEY_START_MJD + rng.uniform(0.0, SURVEY_DAYS)
    peak_flux = rng.uniform(2_000.0, 200_000.0)
    sources: list[dict[str, Any]] = []
    forced: list[dict[str, Any]] = []

    def epoch(t: float, detected: bool) -> None:
        epoch_id = object_id * MAX_EPOCHS_PER_OBJECT + len(forced)
        band = rng.choice(BANDS)
        err = rng.uniform(100.0, 600.0)
        flux = peak_flux * math.exp(-(((t - first - 15.0) / 30.0) ** 2)) + rng.gauss(0, err)
        if detected:
            flux = max(flux, rng.uniform(5.0, 8.0) * err)
            sources.append(
                {
                    "diaSourceId": epoch_id,
                    "diaObjectId": object_id,
                    "midPointTai": t,
                    "filterName": band,
                    "ra": ra + rng.gauss(0, 1e-5),
                    "decl": dec + rng.gauss(0, 1e-5),
                    "psFlux": flux,
                    "psFluxErr": err,
                    "snr": flux / err,
                }
            )
        forced.append(
            {
                "diaForcedSourceId": epoch_id,
                "diaObjectId": object_id,
                "midPointTai": t,
                "filterName": band,
                "psFlux": flux,
                "psFluxErr": err,
            }
        )

    t = first - rng.uniform(25.0, 35.0)
    while t < first:
        epoch(t, detected=False)
        t += rng.uniform(1.0, 6.0)
    t = first
    for _ in range(n_alerts):
        epoch(t, detected=True)
        t += rng.uniform(1.0, 6.0)
        for _ in range(rng.randint(0, 3)):
            epoch(t, detected=False)
            t += rng.uniform(1.0, 6.0)
    return [build_alert(source, sources, forced, diaobject) for source in sources]


def build_alert(
    source: dict[str, Any],
    sources: list[dict[str, Any]],
    forced: list[dict[str, Any]],
    diaobject: dict[str, Any],
) -> dict[str, Any]:
    """The ``elasticc.v0_9_1.alert`` of one diaSource (sources and forced in time order).

    Its history follows the sim's constants for a WFD alert (the DESC TOM's
    ``BaseAlert.reconstruct``): earlier sources within a year; forced photometry only some
    time after the first detection, and then from a month before it.
    """
    t = source["midPointTai"]
    first = sources[0]["midPointTai"]
    prv_forced: list[dict[str, Any]] = []
    if t - first > FORCED_AFTER_FIRST_DETECTION_DAYS:
        start = max(t - FULL_HISTORY_DAYS, first - FORCED_BEFORE_FIRST_DETECTION_DAYS)
        prv_forced = [f for f in forced if start <= f["midPointTai"] < t]
    return {
        "alertId": source["diaSourceId"],  # ELAsTiCC: alertId = diaSourceId
        "diaSource": source,
        "prvDiaSources": [s for s in sources if t - FULL_HISTORY_DAYS <= s["midPointTai"] < t],
        "prvDiaForcedSources": prv_forced,
        "diaObject": diaobject,
    }


def generate_stream(n_alerts: int, seed: int) -> Stream:
    """N alerts from about N/10 objects (5-15 alerts each), sorted by time, encoded."""
    rng = random.Random(seed)
    fields = _diaobject_fields()
    items: list[tuple[float, int, int, bytes]] = []
    forced_ids: set[int] = set()
    stream = Stream()
    index = 0
    while len(items) < n_alerts:
        count = min(rng.randint(5, 15), n_alerts - len(items))
        for alert in _object_alerts(rng, index, count, fields):
            source = alert["diaSource"]
            prv_forced = alert["prvDiaForcedSources"] or []
            forced_ids.update(f["diaForcedSourceId"] for f in prv_forced)
            stream.prv_sources += len(alert["prvDiaSources"] or [])
            stream.prv_forced += len(prv_forced)
            stream.max_prv_forced = max(stream.max_prv_forced, len(prv_forced))
            payload = avro.encode(avro.ELASTICC_ALERT, alert)
            items.append((source["midPointTai"], alert["alertId"], source["diaObjectId"], payload))
        index += 1
    items.sort(key=lambda item: (item[0], item[1]))
    for mjd, alert_id, object_id, payload in items:
        stream.mjds.append(mjd)
        stream.alert_ids.append(alert_id)
        stream.diasource_ids.append(alert_id)  # ELAsTiCC: alertId = diaSourceId
        stream.keys.append(str(object_id).encode())
        stream.payloads.append(payload)
    stream.objects = index
    stream.sources = len(items)
    stream.forced = len(forced_ids)
    return stream


def mjd_datetime(mjd: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=mjd - MJD_UNIX_EPOCH)


def classification_payloads(stream: Stream) -> tuple[list[bytes], list[bytes]]:
    """The fake broker's two brokerClassification messages per alert, encoded; and keys."""
    payloads: list[bytes] = []
    keys: list[bytes] = []
    for alert_id, diasource_id, mjd in zip(
        stream.alert_ids, stream.diasource_ids, stream.mjds, strict=True
    ):
        published = mjd_datetime(mjd)
        for record in classification_messages(
            alert_id, diasource_id, published, published + timedelta(seconds=30)
        ):
            payloads.append(avro.encode(avro.BROKER_CLASSIFICATION, record))
            keys.append(str(alert_id).encode())
    return payloads, keys


# ------------------------------------------------------------------------- isolated servers


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass
class Deployment:
    """A database, Mongo database and topic prefix of the benchmark's own."""

    base: Settings
    run_id: str
    settings: Settings = field(init=False)
    naive_dsn: str = field(init=False)
    naive_mongo: str = field(init=False)

    def __post_init__(self) -> None:
        database = f"bench_{self.run_id}"
        self.settings = self.base.model_copy(
            update={
                "postgres_dsn": with_database(self.base.postgres_dsn, database),
                "mongodb_database": database,
                "topic_prefix": f"bench-{self.run_id}-",
            }
        )
        self.naive_dsn = with_database(self.base.postgres_dsn, f"{database}_naive")
        self.naive_mongo = f"{database}_naive"

    @property
    def databases(self) -> list[str]:
        return [self.settings.mongodb_database, self.naive_mongo]

    def create(self) -> None:
        with psycopg.connect(self.base.postgres_dsn, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'CREATE DATABASE "{name}"')
        migrate(self.settings.postgres_dsn)
        migrate(self.naive_dsn)

    def drop(self) -> None:
        """Drop both databases, the topics and the consumer groups; warn about leftovers."""
        with MongoClient(self.base.mongodb_uri) as client:
            for name in self.databases:
                client.drop_database(name)
        with psycopg.connect(self.base.postgres_dsn, autocommit=True) as conn:
            for name in self.databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin = AdminClient(self.base.kafka_client_config())
        prefix = self.settings.topic_prefix
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        groups = [
            g.group_id
            for g in admin.list_consumer_groups().result(timeout=30).valid
            if g.group_id.startswith(prefix)
        ]
        futures = {
            **(admin.delete_topics(topics, operation_timeout=30) if topics else {}),
            **(admin.delete_consumer_groups(groups) if groups else {}),
        }
        for name, future in futures.items():
            try:
                future.result(timeout=60)
            except Exception as error:  # a group already gone, a topic being deleted: fine
                console.print(f"[dim]cleanup: {name}: {error}[/dim]")


def produce(
    settings: Settings, topic: str, payloads: Sequence[bytes], keys: Sequence[bytes]
) -> float:
    """Produce every message, wait for all acknowledgements; return the seconds it took."""
    ensure_topics(settings, [topic])
    producer = make_producer(
        settings, **{"queue.buffering.max.messages": 1_000_000, "batch.size": 1_000_000}
    )
    started = time.perf_counter()
    deliver(
        producer,
        (Outgoing(topic, payload, key) for payload, key in zip(payloads, keys, strict=True)),
        timeout_s=120,
    )
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- measurements


@dataclass
class ServiceTiming:
    """When a service run started, consumed its first message and stored its N-th.

    A run that has not stored all N messages after ``--max-seconds`` is stopped (SIGINT, the
    service's own graceful shutdown); its rate is then what it stored by that time.
    """

    target: int
    max_seconds: float
    started: float = 0.0
    first_consumed: float | None = None
    all_stored: float | None = None
    timed_out_at: float | None = None
    stored_at_timeout: int = 0
    returned: float = 0.0
    stored: int = 0  # when the run returned
    dead_lettered: int = 0
    cpu: CpuUse | None = None
    on_done: list[Callable[[], None]] = field(default_factory=list)  # the watcher calls them

    @property
    def finished(self) -> bool:
        return self.all_stored is not None

    @property
    def measured(self) -> int:
        """Messages the rate is computed from: all of them, or those stored in time."""
        return self.target if self.finished else self.stored_at_timeout

    @property
    def seconds(self) -> float:
        end = self.all_stored if self.all_stored is not None else self.timed_out_at
        return (end if end is not None else self.returned) - self.started

    @property
    def rate(self) -> float:
        return self.measured / self.seconds

    @property
    def startup(self) -> float:
        return (self.first_consumed or self.started) - self.started

    @property
    def steady_rate(self) -> float:
        """Rate from the first message consumed (start-up excluded)."""
        return self.measured / (self.seconds - self.startup)

    def summary(self, unit: str) -> str:
        if self.finished:
            head = f"{self.seconds:.2f} s from `run()` to the last {unit} stored"
        else:
            head = (
                f"**stopped after {self.seconds:.0f} s with {self.stored_at_timeout:,} of "
                f"{self.target:,} {unit}s stored** (rate = those / time)"
            )
        return (
            f"{head} (start-up to the first message {self.startup:.2f} s; "
            f"{self.steady_rate:,.0f} {unit}s/s after it)"
        )


def _counter(name: str, service: str, topic: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service, "topic": topic}) or 0.0


@contextmanager
def watch_service(
    service: str, topic: str, target: int, max_seconds: float, meter: CpuMeter
) -> Iterator[ServiceTiming]:
    """Times a service run in this process from its own stored / consumed counters.

    CPU use is taken over the same span (start until all stored), while the service's
    database connections are still open.
    """
    consumed0 = _counter("tomstream_messages_consumed_total", service, topic)
    stored0 = _counter("tomstream_messages_stored_total", service, topic)
    timing = ServiceTiming(target, max_seconds)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_INTERVAL_S):
            now = time.perf_counter()
            consumed = _counter("tomstream_messages_consumed_total", service, topic) - consumed0
            stored = int(_counter("tomstream_messages_stored_total", service, topic) - stored0)
            if timing.first_consumed is None and consumed > 0:
                timing.first_consumed = now
            if stored >= target:
                timing.all_stored = now
                timing.cpu = meter.stop(cpu0)
                for callback in timing.on_done:
                    callback()
                os.kill(os.getpid(), signal.SIGINT)  # done: the consumer's graceful shutdown
                return
            if now - timing.started > max_seconds:
                timing.timed_out_at, timing.stored_at_timeout = now, stored
                timing.cpu = meter.stop(cpu0)
                for callback in timing.on_done:
                    callback()
                console.print(
                    f"[yellow]{service}: {stored:,} of {target:,} stored after "
                    f"{max_seconds:.0f} s: stopping it (SIGINT)[/yellow]"
                )
                os.kill(os.getpid(), signal.SIGINT)  # the consumer's graceful shutdown
                return

    watcher = threading.Thread(target=watch, name="bench-watch", daemon=True)
    cpu0 = meter.start()
    timing.started = time.perf_counter()
    watcher.start()
    try:
        yield timing
    finally:
        timing.returned = time.perf_counter()
        stop.set()
        watcher.join()
        timing.stored = int(_counter("tomstream_messages_stored_total", service, topic) - stored0)


# ------------------------------------------------------------------------- CPU accounting

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SERVERS = ("postgres", "ferretdb", "kafka")
_SERVER_LABELS = {"ferretdb": "FerretDB (whole server)", "kafka": "Kafka (whole broker)"}
# PostgreSQL's own processes, shared by every database: counted as "postgres (background)".
_POSTGRES_AUXILIARY = (
    "checkpointer", "background writer", "walwriter", "autovacuum launcher",
    "logical replication launcher", "archiver", "stats collector",
)  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _machine_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


@dataclass
class CpuUse:
    """CPU seconds used during one run, by the benchmark process and each local server."""

    wall: float
    by: dict[str, float]
    machine_busy: float
    machine_total: float

    def summary(self, items: int, unit: str) -> str:
        known = sum(self.by.values())
        parts = [
            f"{name} {seconds:.1f} s ({seconds / items * 1e6:,.0f} µs/{unit})"
            for name, seconds in self.by.items()
        ]
        parts.append(f"everything else (other processes) {max(self.machine_busy - known, 0):.1f} s")
        return (
            f"CPU used over those {self.wall:.1f} s: " + ", ".join(parts) + "; the machine was "
            f"{self.machine_busy / self.machine_total:.0%} busy ({os.cpu_count()} CPUs)"
        )


class CpuMeter:
    """Snapshots of CPU time: this process, the local stack's servers (pid files), machine."""

    def __init__(self, stack_dir: Path, database: str) -> None:
        self._database = database
        self._pids: dict[str, int] = {}
        for name in SERVERS:
            try:
                self._pids[name] = int((stack_dir / "run" / f"{name}.pid").read_text())
            except (OSError, ValueError):
                continue

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {"benchmark process": {os.getpid(): 0.0}}
        for name, pid in self._pids.items():
            if name != "postgres":
                snap[_SERVER_LABELS[name]] = {pid: 0.0}
                continue
            # Backends of other databases (other people's tests) are not ours: left out.
            mine, shared = {}, {pid: 0.0}
            titles = {child: _cmdline(child) for child in _children(pid)}
            for child, title in titles.items():
                if self._database in title.split():
                    mine[child] = 0.0  # our backends, autovacuum of our database
                elif title.removeprefix("postgres: ").startswith(_POSTGRES_AUXILIARY):
                    shared[child] = 0.0
            for child, title in titles.items():  # parallel workers of our backends
                leader = title.rpartition("parallel worker for PID ")[2]
                if leader.isdigit() and int(leader) in mine:
                    mine[child] = 0.0
            snap["PostgreSQL, our backends"] = mine
            snap["PostgreSQL, background processes"] = shared
        for pids in snap.values():
            for pid in list(pids):
                seconds = _cpu_seconds(pid)
                if seconds is None:
                    del pids[pid]
                else:
                    pids[pid] = seconds
        return snap

    def start(self) -> tuple[dict[str, dict[int, float]], float, float, float]:
        return self._snapshot(), *_machine_jiffies(), time.perf_counter()

    def stop(self, started: tuple[dict[str, dict[int, float]], float, float, float]) -> CpuUse:
        before, busy0, total0, wall0 = started
        after, (busy1, total1) = self._snapshot(), _machine_jiffies()
        by = {
            name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()
        }
        return CpuUse(time.perf_counter() - wall0, by, busy1 - busy0, total1 - total0)


# --------------------------------------------------------------------- sampling profiler

# Where a sample of the consumer thread's stack is counted: the first rule, in this order,
# that matches any frame (file suffix, function name; "" = any function of the file).
SAMPLE_RULES: tuple[tuple[str, str, str], ...] = (
    ("consumer core: Kafka messages to Incoming", "tomstream/consumer.py", "_received"),
    ("Kafka: offset commit", "tomstream/consumer.py", "_commit"),
    ("decode: fastavro (decode_alert)", "tomstream/avro.py", "decode_alert"),
    ("decode: read_classification", "tomstream/classification_reader.py", ""),
    ("decode: alert_rows", "tomstream/services/ingest/alerts.py", ""),
    (
        "decode: classification_message",
        "tomstream/services/broker_poll/service.py",
        "classification_message",
    ),
    ("MongoDB: find (existing ids)", "pymongo/synchronous/cursor.py", ""),
    ("MongoDB: insert_many (incl. BSON)", "pymongo/synchronous/collection.py", "insert_many"),
    ("MongoDB: bulk_write (incl. BSON)", "pymongo/synchronous/collection.py", "bulk_write"),
    ("MongoDB: build documents", "tomstream/services/ingest/storage.py", "_raw_document"),
    ("MongoDB: build documents", "tomstream/services/broker_poll/archive.py", "block_document"),
    ("PostgreSQL: COMMIT", "psycopg/transaction.py", "__exit__"),
    ("PostgreSQL: CREATE TEMP TABLE IF NOT EXISTS", "psycopg/connection.py", "execute"),
    ("PostgreSQL: COPY rows (format + send)", "psycopg/_copy.py", "write_row"),
    ("PostgreSQL: COPY end", "psycopg/_copy.py", "__exit__"),
    ("PostgreSQL: INSERT … SELECT … ON CONFLICT", "psycopg/cursor.py", "execute"),
    (
        "PostgreSQL: classifier ids",
        "tomstream/services/broker_poll/storage.py",
        "_classifier_ids_for",
    ),
    ("PostgreSQL: other (psycopg)", "tomstream/storage/postgres.py", ""),
    ("store: content_hash (sha256)", "tomstream/services/broker_poll/storage.py", "content_hash"),
    ("store: row tuples", "tomstream/services/broker_poll/storage.py", "_message_row"),
    ("store: row tuples", "tomstream/services/ingest/storage.py", "_object_row"),
    ("store: row tuples", "tomstream/services/ingest/storage.py", "_receipt_row"),
    ("store: IngestStore.write (dedup loops)", "tomstream/services/ingest/storage.py", "write"),
    (
        "store: observe_delays (metrics)",
        "tomstream/services/broker_poll/service.py",
        "observe_delays",
    ),
    ("store: other (handler.store)", "tomstream/services/ingest/service.py", "store"),
    ("store: other (handler.store)", "tomstream/services/broker_poll/service.py", "store"),
    ("MongoDB: waiting for the write beside PostgreSQL", "tomstream/storage/beside.py", ""),
    ("consumer core: waiting for the store", "tomstream/consumer.py", "_finish_store"),
    # Last: the loop's own line, i.e. librdkafka's consume() (a C call has no frame).
    ("Kafka: consume (librdkafka, incl. waiting for data)", "tomstream/consumer.py", "_consume"),
    ("consumer core: other", "tomstream/consumer.py", ""),
)


def _waits_for_store(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "_finish_store":
            return True
        frame = frame.f_back
    return False


def _store_thread_id() -> int | None:
    """The consumer core's store thread (``<service>-store_0``)."""
    for thread in threading.enumerate():
        if thread.name.rsplit("_", 1)[0].endswith("-store"):
            return thread.ident
    return None


class Sampler:
    """Samples the main thread's stack every ``interval`` s: wall time by what it was doing.

    Unlike cProfile it adds no per-call overhead and sees time blocked in C (Kafka poll,
    socket reads) where it is spent. Each sample is weighted by the time since the previous
    one (a thread holding the GIL delays the sampler).
    """

    def __init__(self, interval: float = 0.001) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._switch = sys.getswitchinterval()
        self.seconds: dict[str, float] = {}
        self.leaves: dict[str, float] = {}
        self.total = 0.0

    def _classify(self, frame: Any) -> tuple[str, str]:
        stack = []
        while frame is not None:
            stack.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        leaf = f"{Path(stack[0][0]).name}:{stack[0][1]}" if stack else "?"
        for label, suffix, name in SAMPLE_RULES:
            for filename, function in stack:
                if suffix in filename and (not name or function == name):
                    return label, leaf
        return "other", leaf

    def _run(self, main_id: int) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self._interval):
            frames = sys._current_frames()
            frame = frames.get(main_id)
            now = time.perf_counter()
            weight, last = now - last, now
            if frame is None:
                continue
            if _waits_for_store(frame):  # the loop waits: count what the store is doing
                frame = frames.get(_store_thread_id(), frame)
            label, leaf = self._classify(frame)
            self.seconds[label] = self.seconds.get(label, 0.0) + weight
            self.leaves[leaf] = self.leaves.get(leaf, 0.0) + weight
            self.total += weight

    def start(self) -> None:
        # The sampler needs the GIL to look: with the default 5 ms switch interval a thread
        # busy in Python would hand it over mostly when it blocks (in Kafka poll or a socket
        # read), which would then be charged with the busy time too.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(self._interval / 5)
        self._thread = threading.Thread(
            target=self._run, args=(threading.main_thread().ident,), daemon=True
        )
        self._thread.start()

    def halt(self) -> None:
        """Stop sampling now (from any thread): the shutdown that follows is not counted."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        sys.setswitchinterval(self._switch)

    def print(self, title: str, top: int) -> None:
        table = Table(title=f"{title}: where the consumer thread's wall time goes (sampled)")
        table.add_column("what")
        table.add_column("seconds", justify="right")
        table.add_column("share", justify="right")
        for label, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            table.add_row(label, f"{seconds:.2f}", f"{seconds / self.total:.1%}")
        table.add_row("total sampled", f"{self.total:.2f}", "100%")
        console.print(table)
        leaves = Table(title=f"{title}: innermost Python frames (sampled)")
        leaves.add_column("frame")
        leaves.add_column("seconds", justify="right")
        leaves.add_column("share", justify="right")
        for leaf, seconds in sorted(self.leaves.items(), key=lambda kv: -kv[1])[:top]:
            leaves.add_row(leaf, f"{seconds:.2f}", f"{seconds / self.total:.1%}")
        console.print(leaves)


@dataclass
class Profiler:
    """cProfile (``--profile DIR``) or stack sampling (``--sample``) of the service runs."""

    directory: Path | None
    sample: bool = False
    top: int = 30
    reports: dict[str, pstats.Stats] = field(default_factory=dict)
    samplers: dict[str, Sampler] = field(default_factory=dict)

    @contextmanager
    def profile(self, name: str, timing: ServiceTiming) -> Iterator[None]:
        if self.sample:
            sampler = self.samplers[name] = Sampler()
            timing.on_done.append(sampler.halt)
            sampler.start()
            try:
                yield
            finally:
                sampler.stop()
            return
        if self.directory is None:
            yield
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{name}.prof"
            profile.dump_stats(path)
            self.reports[name] = pstats.Stats(str(path))
            console.print(f"[dim]profile of {name} written to {path}[/dim]")

    def print(self) -> None:
        for name, report in self.reports.items():
            print_profile(name, report, self.top)
        for name, sampler in self.samplers.items():
            sampler.print(name, self.top)


def time_decode(payloads: Sequence[bytes], passes: int) -> tuple[float, float]:
    """Seconds for decode_alert over all payloads, and for decode + alert_rows: best pass.

    The fastest of several passes is the least disturbed by other work on the machine; it
    also makes the ingest target (a fraction of it) harder, not easier, to meet.
    """
    decode_alert = avro.decode_alert
    bare = with_rows = math.inf
    for _ in range(passes):
        started = time.perf_counter()
        for payload in payloads:
            decode_alert(payload)
        bare = min(bare, time.perf_counter() - started)
        started = time.perf_counter()
        for payload in payloads:
            alert_rows(decode_alert(payload))
        with_rows = min(with_rows, time.perf_counter() - started)
    return bare, with_rows


def time_broker_decode(payloads: Sequence[bytes], passes: int) -> float:
    decode = read_classification
    best = math.inf
    for _ in range(passes):
        started = time.perf_counter()
        for payload in payloads:
            decode(payload)
        best = min(best, time.perf_counter() - started)
    return best


# ------------------------------------------------------------------------ naive baselines

_NAIVE_OBJECT = (
    "INSERT INTO diaobject (diaobject_id, schema_name, ra, decl, redshift, redshift_err, "
    "properties, alert_mjd) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (diaobject_id) DO UPDATE SET schema_name = EXCLUDED.schema_name, "
    "ra = EXCLUDED.ra, decl = EXCLUDED.decl, redshift = EXCLUDED.redshift, "
    "redshift_err = EXCLUDED.redshift_err, properties = EXCLUDED.properties, "
    "alert_mjd = EXCLUDED.alert_mjd, updated_at = now() "
    "WHERE diaobject.alert_mjd <= EXCLUDED.alert_mjd"
)
_NAIVE_SOURCE = (
    "INSERT INTO diasource (diasource_id, diaobject_id, mjd, band, ra, decl, flux, flux_err, "
    "snr) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_NAIVE_FORCED = (
    "INSERT INTO diaforcedsource (diaforcedsource_id, diaobject_id, mjd, band, flux, flux_err) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_NAIVE_RECEIPT = (
    "INSERT INTO alert_receipt (alert_id, topic, kafka_partition, kafka_offset, "
    "kafka_timestamp, ingested_at, diaobject_id, diasource_id, alert_mjd) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_NAIVE_MESSAGE = (
    "INSERT INTO broker_message (classifier_id, alert_id, diasource_id, content_hash, "
    "class_ids, probabilities, elasticc_publish_time, broker_ingest_time, broker_publish_time, "
    "kafka_timestamp, ingested_at, topic, kafka_partition, kafka_offset) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (classifier_id, alert_id, content_hash) DO NOTHING"
)


@dataclass
class NaiveResult:
    items: int
    seconds: float
    statements: int

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def naive_ingest(dep: Deployment, topic: str, payloads: Sequence[bytes]) -> NaiveResult:
    """Decode each alert and write it row by row, every statement its own transaction.

    As the DESC TOM did: the object upserted, then every diaSource and forced source of the
    alert inserted (its whole history, again, ON CONFLICT DO NOTHING), the receipt, and one
    Mongo insert of the raw alert.
    """
    statements = 0
    with (
        psycopg.connect(dep.naive_dsn, autocommit=True) as conn,
        MongoClient(dep.base.mongodb_uri) as client,
    ):
        raw = client[dep.naive_mongo]["alerts"]
        started = time.perf_counter()
        for offset, payload in enumerate(payloads):
            rows: AlertRows = alert_rows(avro.decode_alert(payload))
            now = datetime.now(UTC)
            if (o := rows.obj) is not None:
                conn.execute(
                    _NAIVE_OBJECT,
                    (
                        o.diaobject_id, o.schema_name, o.ra, o.decl, o.redshift,
                        o.redshift_err, Jsonb(o.properties), o.alert_mjd,
                    ),
                )  # fmt: skip
                statements += 1
            for source in rows.sources:
                conn.execute(_NAIVE_SOURCE, source)
            for point in rows.forced:
                conn.execute(_NAIVE_FORCED, point)
            conn.execute(
                _NAIVE_RECEIPT,
                (
                    rows.alert_id, topic, 0, offset, now, now, rows.diaobject_id,
                    rows.diasource_id, rows.mjd,
                ),
            )  # fmt: skip
            statements += len(rows.sources) + len(rows.forced) + 1
            # An insert, not an upsert: FerretDB's SQLite backend looks an integer _id up by
            # scanning the collection, which would make this baseline quadratic.
            with suppress(DuplicateKeyError):
                raw.insert_one(
                    {
                        "_id": rows.alert_id,
                        "schema": rows.schema_name,
                        "diaObjectId": rows.diaobject_id,
                        "diaSourceId": rows.diasource_id,
                        "mjd": rows.mjd,
                        "topic": topic,
                        "partition": 0,
                        "offset": offset,
                        "payload": Binary(payload),
                    }
                )
        seconds = time.perf_counter() - started
        receipts = conn.execute("SELECT count(*) FROM alert_receipt").fetchone()
        documents = raw.count_documents({})
    if receipts != (len(payloads),) or documents != len(payloads):
        raise RuntimeError(f"naive ingest stored {receipts} receipts, {documents} documents")
    return NaiveResult(len(payloads), seconds, statements)


def naive_broker_poll(dep: Deployment, topic: str, payloads: Sequence[bytes]) -> NaiveResult:
    """Decode each message, one auto-committed INSERT and one Mongo insert per message.

    Classifier ids are looked up once per classifier and remembered (kind to the baseline).
    """
    classifier_ids: dict[tuple[str, str, str, str], int] = {}
    with (
        psycopg.connect(dep.naive_dsn, autocommit=True) as conn,
        MongoClient(dep.base.mongodb_uri) as client,
    ):
        raw = client[dep.naive_mongo]["broker_messages"]
        started = time.perf_counter()
        for offset, payload in enumerate(payloads):
            m = broker_poll_service.classification_message(
                read_classification(payload),
                kafka_timestamp=datetime.now(UTC),
                topic=topic,
                partition=0,
                offset=offset,
                payload=payload,
            )
            classifier_id = classifier_ids.get(m.classifier)
            if classifier_id is None:
                conn.execute(
                    "INSERT INTO classifier (broker_name, broker_version, classifier_name, "
                    "classifier_params) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    m.classifier,
                )
                found = conn.execute(
                    "SELECT classifier_id FROM classifier WHERE broker_name = %s AND "
                    "broker_version = %s AND classifier_name = %s AND classifier_params = %s",
                    m.classifier,
                ).fetchone()
                assert found is not None
                classifier_id = classifier_ids[m.classifier] = found[0]
            now = datetime.now(UTC)
            content_hash = m.content_hash
            conn.execute(
                _NAIVE_MESSAGE,
                (
                    classifier_id, m.alert_id, m.diasource_id, content_hash, list(m.class_ids),
                    list(m.probabilities), m.elasticc_publish_time, m.broker_ingest_time,
                    m.broker_publish_time, m.kafka_timestamp, now, m.topic, m.partition,
                    m.offset,
                ),
            )  # fmt: skip
            with suppress(DuplicateKeyError):  # a replayed message: stored once
                raw.insert_one(
                    {"_id": f"{topic}:{offset}", "payload": Binary(payload), "ingestedAt": now}
                )
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM broker_message").fetchone()
        documents = raw.count_documents({})
    if rows != (len(payloads),) or documents != len(payloads):
        raise RuntimeError(f"naive broker_poll stored {rows} rows, {documents} documents")
    return NaiveResult(len(payloads), seconds, len(payloads))


# ----------------------------------------------------------------------------- the checks


@dataclass
class Check:
    what: str
    expected: int
    found: int

    @property
    def ok(self) -> bool:
        return self.expected == self.found


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def ingest_checks(dep: Deployment, stream: Stream, timing: ServiceTiming) -> list[Check]:
    """Exact counts; after a stopped run, what was stored must still be whole alerts."""
    dsn = dep.settings.postgres_dsn
    with MongoClient(dep.settings.mongodb_uri) as client:
        raw = client[dep.settings.mongodb_database]["alerts"].count_documents({})
    alerts = stream.alerts if timing.finished else timing.stored
    checks = [
        Check("ingest: messages stored (counter)", stream.alerts, timing.stored),
        Check("ingest: receipts", alerts, _count(dsn, "SELECT count(*) FROM alert_receipt")),
        Check(
            "ingest: distinct alert ids",
            alerts,
            _count(dsn, "SELECT count(DISTINCT alert_id) FROM alert_receipt"),
        ),
        Check("ingest: raw alerts (MongoDB)", alerts, raw),
        Check("ingest: dead letters", 0, timing.dead_lettered),
    ]
    if timing.finished:
        checks += [
            Check("ingest: objects", stream.objects, _count(dsn, "SELECT count(*) FROM diaobject")),
            Check(
                "ingest: diaSources", stream.sources, _count(dsn, "SELECT count(*) FROM diasource")
            ),
            Check(
                "ingest: forced sources",
                stream.forced,
                _count(dsn, "SELECT count(*) FROM diaforcedsource"),
            ),
        ]
    return checks


def broker_checks(dep: Deployment, messages: int, timing: ServiceTiming) -> list[Check]:
    dsn = dep.settings.postgres_dsn
    with MongoClient(dep.settings.mongodb_uri) as client:
        raw = count_raw_messages(client[dep.settings.mongodb_database])
    stored = messages if timing.finished else timing.stored
    return [
        Check("broker_poll: messages stored (counter)", messages, timing.stored),
        Check(
            "broker_poll: broker_message rows",
            stored,
            _count(dsn, "SELECT count(*) FROM broker_message"),
        ),
        Check("broker_poll: raw messages (MongoDB)", stored, raw),
        Check("broker_poll: classifiers", 2, _count(dsn, "SELECT count(*) FROM classifier")),
        Check("broker_poll: dead letters", 0, timing.dead_lettered),
    ]


# ----------------------------------------------------------------------------- the report


def _times(fast: float, slow: float) -> str:
    return f"{fast / slow:,.1f} times"


@dataclass
class Results:
    command: str
    date: str
    machine: str
    servers: str
    stream: Stream
    broker_messages: int
    produce_alerts_s: float
    produce_messages_s: float
    decode_s: float
    decode_rows_s: float
    broker_decode_s: float
    ingest: ServiceTiming | None
    broker: ServiceTiming | None
    naive_ingest: NaiveResult | None
    naive_broker: NaiveResult | None
    checks: list[Check]
    batch_sizes: tuple[int, int]  # ingest, broker_poll

    @property
    def decode_rate(self) -> float:
        return self.stream.alerts / self.decode_s

    @property
    def complete(self) -> bool:
        """Every part ran to the end and every count is right: fit for the docs."""
        return (
            self.ingest is not None
            and self.ingest.finished
            and self.broker is not None
            and self.broker.finished
            and all(c.ok for c in self.checks)
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(measurement, rate, comparison) rows, shared by the console and the docs."""
        n = self.stream.alerts
        decode_rows_rate = n / self.decode_rows_s
        rows = [
            ("bare Avro decode (`decode_alert`, in memory)", f"{self.decode_rate:,.0f} alerts/s",
             "the reference of the ingest target"),
            ("decode + `alert_rows` (in memory)", f"{decode_rows_rate:,.0f} alerts/s",
             f"{decode_rows_rate / self.decode_rate:.0%} of bare decode"),
        ]  # fmt: skip
        if self.ingest is not None:
            ratio = self.ingest.rate / self.decode_rate
            met = "met" if ratio >= INGEST_TARGET_RATIO and self.ingest.finished else "**missed**"
            partial = "" if self.ingest.finished else " (stopped, see below)"
            rows.append(
                (
                    "**ingest** (Kafka → PostgreSQL + MongoDB)",
                    f"{self.ingest.rate:,.0f} alerts/s{partial}",
                    f"{ratio:.1%} of bare decode; target ≥ {INGEST_TARGET_RATIO:.0%} "
                    f"({INGEST_TARGET_RATIO * self.decode_rate:,.0f} alerts/s): {met}",
                )
            )
        if self.naive_ingest:
            versus = (
                f"ingest is {_times(self.ingest.rate, self.naive_ingest.rate)} as fast"
                if self.ingest is not None
                else ""
            )
            rows.append(
                (
                    f"naive ingest (one INSERT per row, auto-commit; "
                    f"{self.naive_ingest.items:,} alerts)",
                    f"{self.naive_ingest.rate:,.0f} alerts/s",
                    versus,
                )
            )
        rows.append(
            (
                "bare decode of broker messages (in memory)",
                f"{self.broker_messages / self.broker_decode_s:,.0f} msg/s",
                "for reference",
            )
        )
        if self.broker is not None:
            ok = self.broker.rate >= BROKER_POLL_TARGET and self.broker.finished
            partial = "" if self.broker.finished else " (stopped, see below)"
            rows.append(
                (
                    "**broker_poll** (Kafka → PostgreSQL + MongoDB)",
                    f"{self.broker.rate:,.0f} msg/s{partial}",
                    f"target ≥ {BROKER_POLL_TARGET:,} msg/s: {'met' if ok else '**missed**'}",
                )
            )
        if self.naive_broker:
            versus = (
                f"broker_poll is {_times(self.broker.rate, self.naive_broker.rate)} as fast"
                if self.broker is not None
                else ""
            )
            rows.append(
                (
                    f"naive broker_poll (one INSERT per message, auto-commit; "
                    f"{self.naive_broker.items:,} messages)",
                    f"{self.naive_broker.rate:,.0f} msg/s",
                    versus,
                )
            )
        return rows

    def details(self) -> list[str]:
        s = self.stream
        lines = [
            f"stream: {s.alerts:,} alerts of {s.objects:,} objects "
            f"({s.nbytes / s.alerts / 1024:.2f} KiB per alert, {s.nbytes / 2**20:,.0f} MiB); "
            f"per alert {s.prv_sources / s.alerts:.1f} prvDiaSources and "
            f"{s.prv_forced / s.alerts:.1f} prvDiaForcedSources (up to {s.max_prv_forced}); "
            f"{s.sources:,} diaSources, {s.forced:,} forced sources; "
            f"{self.broker_messages:,} classification messages",
            f"produced in {self.produce_alerts_s:.1f} s (alerts) and "
            f"{self.produce_messages_s:.1f} s (classifications)",
        ]
        for name, timing, unit in (("ingest", self.ingest, "alert"),
                                   ("broker_poll", self.broker, "message")):  # fmt: skip
            if timing is not None:
                lines.append(f"{name}: {timing.summary(unit)}")
                if timing.cpu is not None:
                    lines.append(f"{name}: {timing.cpu.summary(timing.measured, unit)}")
        if self.naive_ingest is not None:
            lines.append(
                f"naive ingest: {self.naive_ingest.statements:,} INSERTs for "
                f"{self.naive_ingest.items:,} alerts in {self.naive_ingest.seconds:.1f} s"
            )
        for service in ("ingest", "broker_poll"):
            checks = [c for c in self.checks if c.what.startswith(f"{service}: ")]
            if checks:
                lines.append(
                    f"{service} counts checked exactly: "
                    + ", ".join(
                        f"{c.what.removeprefix(service + ': ')} {c.found:,}"
                        + ("" if c.ok else f" (**expected {c.expected:,}**)")
                        for c in checks
                    )
                )
        return lines

    def print(self) -> None:
        table = Table(title=f"alert cycle, {self.stream.alerts:,} alerts")
        table.add_column("measurement")
        table.add_column("rate", justify="right")
        table.add_column("comparison")
        for what, rate, comparison in self.rows():
            table.add_row(_plain(what), _plain(rate), _plain(comparison))
        console.print(table)
        for line in self.details():
            if "counts checked exactly" not in line:  # the table below shows them
                console.print(f"  {_plain(line)}")
        checks = Table(title="exact counts")
        checks.add_column("what")
        checks.add_column("expected", justify="right")
        checks.add_column("found", justify="right")
        checks.add_column("")
        for c in self.checks:
            checks.add_row(c.what, f"{c.expected:,}", f"{c.found:,}", "ok" if c.ok else "WRONG")
        console.print(checks)

    def markdown(self) -> str:
        lines = [
            START_MARKER,
            "## Alert cycle",
            "",
            "`bench/alert_cycle.py`: a synthetic ELAsTiCC2 (`elasticc.v0_9_1`) stream through "
            "Kafka into the real ingest and broker_poll services, against a naive baseline "
            "(one auto-committed INSERT per row and one Mongo write per message, as the DESC "
            "TOM stored them) in the same run.",
            "",
            f"- command: `{self.command}`",
            f"- date: {self.date}",
            f"- machine: {self.machine}",
            f"- servers: {self.servers}",
            "",
            "| measurement | rate | comparison |",
            "| --- | ---: | --- |",
            *(f"| {what} | {rate} | {comparison} |" for what, rate, comparison in self.rows()),
            "",
            *(f"- {line}" for line in self.details()),
            "",
            "How it is timed: bare decode loops over the encoded payloads in memory (the "
            "fastest of `--decode-passes` passes), with the garbage collector tuned as the "
            "services tune it while consuming. Each "
            "service runs in the benchmark's process (its consumer loop in the main thread, its "
            "store in a second thread) with batches of at most "
            f"{self.batch_sizes[0]:,} alerts (ingest) and {self.batch_sizes[1]:,} messages "
            "(broker_poll; both the commands' defaults unless `--ingest-batch-size` / "
            "`--broker-poll-batch-size` say otherwise) on a "
            "new consumer group; a thread reads the service's own counter "
            "`tomstream_messages_stored_total` (incremented once a batch is in both stores) "
            "every 20 ms, and the rate is N / (time from calling `run()` to the counter "
            "reaching N): start-up included (as is the last partial batch, which waits for "
            "the consumer's 0.5 s batch time), the shutdown excluded. "
            "The CPU figures come from `/proc` over the same span; FerretDB's and Kafka's are "
            "the whole server's, other clients included. "
            "A run still short of N after `--max-seconds` is stopped and rated on what it "
            "stored by then. The naive baselines decode from memory (no Kafka) and write to a "
            "database and Mongo database of their own.",
            END_MARKER,
        ]
        return "\n".join(lines) + "\n"


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace the alert-cycle section between its markers; append it if there is none."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def machine() -> str:
    memory = "?"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cpus} CPUs ({model}), {memory} memory; "
        f"Python {platform.python_version()}"
    )


def server_versions(dep: Deployment) -> str:
    with psycopg.connect(dep.settings.postgres_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg = row[0].split()[0] if row else "?"
    with MongoClient(dep.base.mongodb_uri) as client:
        info = client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        version = info["ferretdbVersion"]
        if version == "unknown":  # the stack's embedded build does not stamp one
            version = ", ".join(
                p.name.removeprefix("ferretdb-") for p in dep.base.cache_dir.glob("ferretdb-*")
            )
        mongo = f"FerretDB {version or '?'} (MongoDB wire {info.get('version', '?')})"
    else:
        mongo = f"MongoDB {info.get('version', '?')}"
    return (
        f"PostgreSQL {pg}, {mongo}, Kafka at {dep.base.kafka_bootstrap_servers} "
        "(all on this machine for the local stack)"
    )


FuncKey = tuple[str, int, str]


@dataclass(frozen=True)
class Part:
    """One line of a profile breakdown: the time of the functions it matches.

    ``func`` matches (file suffix, function name); with ``caller`` only the time of calls made
    from that caller counts; ``self_time`` sums the functions' own time (for a whole library).
    """

    label: str
    func: tuple[str, str]
    caller: tuple[str, str] | None = None
    self_time: bool = False


def _matches(key: FuncKey, pattern: tuple[str, str]) -> bool:
    filename, _, name = key
    return filename.endswith(pattern[0]) and (not pattern[1] or name == pattern[1])


def _part_seconds(stats: dict[FuncKey, Any], part: Part) -> float:
    total = 0.0
    for key, (_cc, _nc, tottime, cumtime, callers) in stats.items():
        if not _matches(key, part.func):
            continue
        if part.self_time:
            total += tottime
        elif part.caller is None:
            total += cumtime
        else:
            total += sum(
                edge[3] for caller, edge in callers.items() if _matches(caller, part.caller)
            )
    return total


_COMMON_PARTS = (
    Part(
        "  Kafka consume (librdkafka; includes waiting for data)",
        ("~", "<method 'consume' of 'cimpl.Consumer' objects>"),
    ),
    # The store runs in a thread of its own, which cProfile does not see: here it is the
    # loop's wait for the previous batch's store (--sample shows what the store does then).
    Part("  waiting for the store thread", ("tomstream/consumer.py", "_finish_store")),
    Part("  Kafka offset commits", ("~", "<method 'commit' of 'cimpl.Consumer' objects>")),
    Part("  prometheus_client (own time)", ("prometheus_client/metrics.py", ""), self_time=True),
)
BREAKDOWNS: dict[str, tuple[tuple[str, str], tuple[Part, ...]]] = {
    "ingest": (
        ("tomstream/services/ingest/service.py", "run"),
        (
            Part(
                "  decode step (IngestHandler.decode)",
                ("tomstream/services/ingest/service.py", "decode"),
            ),
            Part("    decode_alert (fastavro)", ("tomstream/avro.py", "decode_alert")),
            Part("    alert_rows", ("tomstream/services/ingest/alerts.py", "alert_rows")),
            *_COMMON_PARTS,
        ),
    ),
    "broker_poll": (
        ("tomstream/services/broker_poll/service.py", "run"),
        (
            Part("  decode step (BrokerPollHandler.decode)", ("broker_poll/service.py", "decode")),
            Part("    read_classification", ("classification_reader.py", "read_classification")),
            Part(
                "    classification_message", ("broker_poll/service.py", "classification_message")
            ),
            *_COMMON_PARTS,
        ),
    ),
}


def print_profile(name: str, stats: pstats.Stats, top: int) -> None:
    console.rule(f"profile: {name}")
    raw: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    root, parts = BREAKDOWNS[name]
    total = _part_seconds(raw, Part("", root))
    table = Table(title=f"{name}: where the time goes (cProfile, wall time)")
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    # cProfile covers the whole call, so the final consume timeout and shutdown are in here
    # too (about 1 s of "Kafka consume"); --sample stops at the last message stored.
    table.add_row(f"{name} run(), whole call", f"{total:.2f}", "100%")
    for part in parts:
        seconds = _part_seconds(raw, part)
        table.add_row(part.label, f"{seconds:.2f}", f"{seconds / total:.0%}" if total else "-")
    console.print(table)
    stats.sort_stats("tottime").print_stats(top)


# ----------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure Avro decode, ingest and broker_poll rates on a synthetic "
        "ELAsTiCC2 stream, against naive one-INSERT-per-row baselines.",
    )
    parser.add_argument(
        "--alerts", type=int, default=100_000, help="alerts in the stream (default 100000)"
    )
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=5_000,
        help="alerts (and their 2 classification messages each) written by the naive "
        "baselines; 0 skips them (default 5000)",
    )
    parser.add_argument("--seed", type=int, default=20_240_601, help="stream seed")
    parser.add_argument(
        "--exit-on-idle",
        type=float,
        default=3.0,
        help="a service run is stopped once it stored everything; as a fallback it also stops "
        "after this many seconds without a message (default 3)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1_800.0,
        help="stop a service run that has not stored everything after this long and rate it "
        "on what it stored (default 1800)",
    )
    parser.add_argument(
        "--decode-passes",
        type=int,
        default=3,
        help="passes of the in-memory decode loops; the fastest counts (default 3)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="rewrite the 'Alert cycle' section of docs/benchmarks.md with the figures",
    )
    parser.add_argument(
        "--docs", type=Path, default=DOCS, help="the file --write-docs rewrites (%(default)s)"
    )
    parser.add_argument("--skip-ingest", action="store_true", help="do not run ingest")
    parser.add_argument("--skip-broker-poll", action="store_true", help="do not run broker_poll")
    parser.add_argument(
        "--ingest-batch-size",
        type=int,
        default=INGEST_BATCH_SIZE,
        help="ingest's batch size (default: the command's, %(default)s)",
    )
    parser.add_argument(
        "--broker-poll-batch-size",
        type=int,
        default=BROKER_POLL_BATCH_SIZE,
        help="broker_poll's batch size (default: the command's, %(default)s)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="cProfile the ingest and broker_poll runs into DIR/*.prof and print the top "
        "functions of the consumer loop's thread; the store thread shows as the loop's wait "
        "for it (slows them: not with --write-docs)",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="sample the consumer loop's stack every 1 ms during the service runs and print "
        "where its wall time goes; while it waits for the store thread, that thread's stack "
        "is sampled instead (little overhead, but not with --write-docs)",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="lines per profile table")
    parser.add_argument("--keep", action="store_true", help="keep databases and topics")
    parser.add_argument("--verbose", action="store_true", help="the services' INFO logs")
    args = parser.parse_args(argv)
    if args.alerts < 1 or args.naive_sample < 0 or args.decode_passes < 1:
        parser.error("--alerts and --decode-passes must be ≥ 1, --naive-sample ≥ 0")
    if args.profile and args.sample:
        parser.error("--profile and --sample are exclusive")
    if args.write_docs and (
        args.profile or args.sample or args.skip_ingest or args.skip_broker_poll
    ):
        parser.error("--write-docs needs a full, unprofiled run")
    return args


def step(message: str) -> Callable[[], None]:
    started = time.perf_counter()
    console.print(f"[bold]{message}[/bold] …")

    def done() -> None:
        console.print(f"  done in {time.perf_counter() - started:.1f} s")

    return done


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("INFO" if args.verbose else "WARNING")
    command = " ".join([".venv/bin/python", "bench/alert_cycle.py", *sys.argv[1:]])
    base = load_settings()
    dep = Deployment(base, uuid.uuid4().hex[:8])
    settings = dep.settings
    profiler = Profiler(args.profile, args.sample, args.profile_top)
    stack_dir = base.stack_dir if base.stack_dir.is_absolute() else Path.cwd() / base.stack_dir
    meter = CpuMeter(
        stack_dir if stack_dir.exists() else REPO / ".stack", settings.mongodb_database
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(
        f"database {settings.mongodb_database} (+ _naive), topic prefix {settings.topic_prefix}"
    )
    dep.create()
    try:
        done = step(f"generating {args.alerts:,} alerts (seed {args.seed})")
        stream = generate_stream(args.alerts, args.seed)
        done()
        done = step("encoding the classification messages")
        messages, message_keys = classification_payloads(stream)
        done()

        alert_topic = settings.topic(ALERT_TOPIC)
        message_topic = settings.topic(CLASSIFICATION_TOPIC)
        done = step(f"producing to {alert_topic} and {message_topic}")
        produce_alerts_s = produce(settings, alert_topic, stream.payloads, stream.keys)
        produce_messages_s = produce(settings, message_topic, messages, message_keys)
        done()

        done = step("bare decode")
        with collector_tuned_for_batches():  # as the services run, for a like-for-like ratio
            decode_s, decode_rows_s = time_decode(stream.payloads, args.decode_passes)
            broker_decode_s = time_broker_decode(messages, args.decode_passes)
        done()
        console.print(f"  bare decode: {stream.alerts / decode_s:,.0f} alerts/s")

        checks: list[Check] = []
        ingest = broker = None
        if not args.skip_ingest:
            done = step("ingest")
            with (
                watch_service(
                    ingest_service.SERVICE, alert_topic, stream.alerts, args.max_seconds, meter
                ) as ingest,
                profiler.profile("ingest", ingest),
            ):
                stats = ingest_service.run(
                    settings,
                    group_id=f"{settings.topic_prefix}bench-ingest",
                    exit_on_idle_s=args.exit_on_idle,
                    batch_size=args.ingest_batch_size,
                )
            ingest.dead_lettered = stats.dead_lettered
            done()
            console.print(f"  ingest: {ingest.rate:,.0f} alerts/s, {ingest.summary('alert')}")
            checks += ingest_checks(dep, stream, ingest)

        if not args.skip_broker_poll:
            done = step("broker_poll")
            source = BrokerSource(name=BROKER, topics=[CLASSIFICATION_TOPIC])
            config = BrokerPollConfig(brokers=[source])
            with (
                watch_service(
                    broker_poll_service.SERVICE,
                    message_topic,
                    len(messages),
                    args.max_seconds,
                    meter,
                ) as broker,
                profiler.profile("broker_poll", broker),
            ):
                all_stats = broker_poll_service.run(
                    settings,
                    config,
                    group_id=f"{settings.topic_prefix}bench-broker-poll",
                    exit_on_idle_s=args.exit_on_idle,
                    batch_size=args.broker_poll_batch_size,
                )
            broker.dead_lettered = sum(s.dead_lettered for s in all_stats)
            done()
            console.print(f"  broker_poll: {broker.rate:,.0f} msg/s, {broker.summary('message')}")
            checks += broker_checks(dep, len(messages), broker)

        naive_alerts = naive_messages = None
        if args.naive_sample:
            sample = min(args.naive_sample, stream.alerts)
            done = step(f"naive ingest of {sample:,} alerts")
            naive_alerts = naive_ingest(dep, alert_topic, stream.payloads[:sample])
            done()
            console.print(f"  naive ingest: {naive_alerts.rate:,.1f} alerts/s")
            done = step(f"naive broker_poll of {2 * sample:,} messages")
            naive_messages = naive_broker_poll(dep, message_topic, messages[: 2 * sample])
            done()
            console.print(f"  naive broker_poll: {naive_messages.rate:,.1f} msg/s")

        results = Results(
            command=command,
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=f"{machine()}; load average {load:.2f} when the run started",
            servers=server_versions(dep),
            stream=stream,
            broker_messages=len(messages),
            produce_alerts_s=produce_alerts_s,
            produce_messages_s=produce_messages_s,
            decode_s=decode_s,
            decode_rows_s=decode_rows_s,
            broker_decode_s=broker_decode_s,
            ingest=ingest,
            broker=broker,
            naive_ingest=naive_alerts,
            naive_broker=naive_messages,
            checks=checks,
            batch_sizes=(args.ingest_batch_size, args.broker_poll_batch_size),
        )
        results.print()
        profiler.print()
        if args.write_docs:
            # A run that missed (or did not finish) is a result too: it goes in with its notes.
            write_docs(results.markdown(), args.docs)
            console.print(f"wrote the Alert cycle section of {args.docs}")
        if not all(c.ok for c in checks):
            console.print("[red]some counts are wrong[/red]")
            return 1
        return 0
    finally:
        if args.keep:
            console.print(f"kept {settings.mongodb_database} and topics {settings.topic_prefix}*")
        else:
            dep.drop()


if __name__ == "__main__":
    sys.exit(main())

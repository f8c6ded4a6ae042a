"""``tomstream sim send``: stream the unsent alerts, in time order, and remember what was sent.

Batch by batch: read the next unsent alerts (time order) and, in three queries, everything
they need; encode the batch's rows once and put each alert together from them
(:func:`tomstream.services.sim.alerts.encode_batch`); produce asynchronously, keyed on the
diaObject id so that an object's alerts stay in order on one partition; flush; and only once
Kafka has confirmed every message of the batch, mark its alerts sent in PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import psycopg
from confluent_kafka import KafkaException, Producer
from pydantic import BaseModel, ConfigDict

from tomstream.config import Settings
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer
from tomstream.services.sim import storage
from tomstream.services.sim.alerts import (
    ALERT_TOPICS,
    FULL_HISTORY_DAYS,
    encode_batch,
    through_mjd_after,
)
from tomstream.services.sim.storage import PendingAlert, SimError

BATCH_ALERTS = 5000
"""Alerts per batch: one flush and one PostgreSQL transaction each."""
FLUSH_TIMEOUT_S = 120.0
SEND_LOCK_KEY = 0x73696D73  # "sims": one `sim send` at a time per database


class SendSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    through_mjd: float
    alerts: int
    objects: int
    messages: dict[str, int]
    """Messages per topic (base names, without the deployment's prefix)."""
    seconds: float


def resolve_through_mjd(
    conn: psycopg.Connection, through_mjd: float | None, added_days: float | None
) -> float:
    """The MJD to send through, from exactly one of ``--through-mjd`` and ``--added-days``."""
    if (through_mjd is None) == (added_days is None):
        raise SimError("give exactly one of --through-mjd and --added-days")
    if not storage.has_alerts(conn):
        raise SimError("no alerts loaded: run `tomstream sim load` or `tomstream sim synth` first")
    if through_mjd is not None:
        return through_mjd
    assert added_days is not None
    last = storage.last_sent_mjd(conn)
    if last is None:
        raise SimError(
            "--added-days continues from the last alert sent, and none was sent yet: "
            "start with --through-mjd"
        )
    return through_mjd_after(last, added_days)


class _Pacer:
    """Spaces alerts to at most ``rate`` per second (no limit when rate is None)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self._interval


class AlertSender:
    """Sends the unsent alerts through an MJD to the alert topics; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        conn: psycopg.Connection,
        *,
        rate: float | None = None,
    ) -> None:
        self._settings = settings
        self._conn = conn
        self._pacer = _Pacer(rate)
        # At a limited rate, a batch is about a second's worth, so that what was sent is
        # recorded as it goes.
        self._batch_alerts = min(BATCH_ALERTS, max(1, int(rate))) if rate else BATCH_ALERTS
        self._topics = {name: settings.topic(name) for name in ALERT_TOPICS}

    def run(
        self, through_mjd: float, on_batch: Callable[[int], None] = lambda _sent: None
    ) -> SendSummary:
        started = time.monotonic()
        ensure_topics(self._settings, self._topics.values())  # fails fast if Kafka is down
        producer = make_producer(self._settings)
        locked = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (SEND_LOCK_KEY,)).fetchone()
        if not (locked and locked[0]):
            raise SimError("another `tomstream sim send` is running on this database")
        try:
            send_id = storage.start_send_log(self._conn, through_mjd, self._settings.topic_prefix)
            messages: Counter[str] = Counter()
            objects: set[int] = set()
            alerts = 0
            while batch := storage.next_unsent(self._conn, through_mjd, self._batch_alerts):
                batch_messages = self._send_batch(producer, batch)
                storage.mark_sent(
                    self._conn, send_id, [alert.alert_id for alert in batch], batch_messages
                )
                messages.update(batch_messages)
                objects.update(alert.diaobject_id for alert in batch)
                alerts += len(batch)
                on_batch(len(batch))
            storage.finish_send_log(self._conn, send_id)
        finally:
            if not self._conn.broken:  # a lost connection has released the lock already
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (SEND_LOCK_KEY,))
        return SendSummary(
            through_mjd=through_mjd,
            alerts=alerts,
            objects=len(objects),
            messages={name: messages[name] for name in ALERT_TOPICS},
            seconds=time.monotonic() - started,
        )

    def _send_batch(self, producer: Producer, batch: Sequence[PendingAlert]) -> Counter[str]:
        """Produce one batch and wait until Kafka has it all; raise if any message failed.

        The caller marks the batch sent only after this returns, so an alert is never marked
        sent without Kafka having it (acks=all, idempotent producer: no duplicates from
        retries). What remains is at least once, never at most once: if the process dies
        after Kafka confirmed a batch but before ``mark_sent`` commits (one UPDATE, a few ms
        per batch), or if part of a batch failed, the next run sends those alerts again. A
        duplicate has the same alertId and key; the TOM's consumers store by alertId, so it
        changes nothing there.
        """
        rows = storage.read_batch(self._conn, batch, FULL_HISTORY_DAYS)
        encoded = encode_batch(rows.objects, rows.sources, rows.forced)
        counts: Counter[str] = Counter()

        def outgoing() -> Iterator[Outgoing]:
            for alert in batch:
                self._pacer.wait()
                if alert.diasource_id not in encoded.sources:
                    raise SimError(f"alert {alert.alert_id} has no diaSource {alert.diasource_id}")
                key = str(alert.diaobject_id)
                for topic, payload in encoded.messages(alert.alert_id, alert.diasource_id):
                    counts[topic] += 1
                    yield Outgoing(self._topics[topic], payload, key)

        try:
            deliver(producer, outgoing(), timeout_s=FLUSH_TIMEOUT_S)
        except KafkaException as error:
            raise SimError(
                f"Kafka did not take the batch ({error.args[0].str()}); it was not marked sent "
                "and will be sent again"
            ) from error
        return counts

"""The transactional outbox: publish an event if and only if its database change committed.

A service calls :func:`enqueue` with the connection of the transaction that makes the change;
:class:`OutboxRelay` (a thread in the API and in the cadence worker; any one of them
publishes every service's events) publishes
committed events in order and marks them published. Delivery is at least once: a crash between
publishing and marking publishes the event again, so events carry ids their consumers dedupe on.
"""

from __future__ import annotations

import threading
import time

import psycopg
import structlog

from tomstream.config import Settings
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer

log = structlog.get_logger(__name__)

CHANNEL = "tomstream_outbox"
BATCH = 500


def enqueue(conn: psycopg.Connection, topic: str, payload: bytes, key: str | None = None) -> None:
    """Add an event to the outbox, inside the caller's transaction (``topic`` unprefixed)."""
    conn.execute(
        "INSERT INTO outbox (topic, message_key, payload) VALUES (%s, %s, %s)",
        (topic, key, payload),
    )


class OutboxRelay:
    """Publishes committed outbox rows to Kafka, woken by NOTIFY (and polling as a fallback)."""

    def __init__(self, settings: Settings, poll_s: float = 1.0) -> None:
        self._settings = settings
        self._poll_s = poll_s
        self._producer = make_producer(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._known_topics: set[str] = set()

    def publish_pending(self, conn: psycopg.Connection) -> int:
        """Publish every committed, unpublished event; return how many."""
        total = 0
        while True:
            with conn.transaction():
                # SKIP LOCKED: several relays (API replicas) never publish the same rows at once.
                rows = conn.execute(
                    "SELECT outbox_id, topic, message_key, payload FROM outbox "
                    "WHERE published_at IS NULL ORDER BY outbox_id LIMIT %s "
                    "FOR UPDATE SKIP LOCKED",
                    (BATCH,),
                ).fetchall()
                if not rows:
                    return total
                topics = {self._settings.topic(row[1]) for row in rows} - self._known_topics
                if topics:
                    ensure_topics(self._settings, topics)
                    self._known_topics |= topics
                deliver(
                    self._producer,
                    (
                        Outgoing(self._settings.topic(topic), bytes(payload), key)
                        for _, topic, key, payload in rows
                    ),
                )
                conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE outbox_id = ANY(%s)",
                    ([row[0] for row in rows],),
                )
            total += len(rows)

    def run(self) -> None:
        """Relay until :meth:`stop`; survives database and Kafka outages by retrying."""
        while not self._stop.is_set():
            try:
                with (
                    psycopg.connect(
                        self._settings.postgres_dsn, autocommit=True, connect_timeout=5
                    ) as listener,
                    psycopg.connect(self._settings.postgres_dsn) as conn,
                ):
                    listener.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        self.publish_pending(conn)
                        # Wait for a NOTIFY or the poll interval, whichever comes first.
                        for _ in listener.notifies(timeout=self._poll_s, stop_after=1):
                            pass
            except Exception as error:  # a server outage: back off and reconnect
                if self._stop.is_set():
                    return
                log.warning("outbox relay failed, retrying", error=str(error).splitlines()[0])
                time.sleep(1.0)

    def start(self) -> OutboxRelay:
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

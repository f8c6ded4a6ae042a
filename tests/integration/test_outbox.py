"""The transactional outbox against real PostgreSQL and Kafka."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from confluent_kafka import Consumer
from conftest import Isolated

from tomstream.outbox import OutboxRelay, enqueue

pytestmark = pytest.mark.integration


def read(settings, topic: str, expected: int, timeout: float = 30) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic(topic)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def test_only_committed_events_are_published_in_order_and_marked(
    isolated: Callable[[str], Isolated],
) -> None:
    settings = isolated("o").settings
    with psycopg.connect(settings.postgres_dsn) as conn:
        with conn.transaction():
            for i in range(5):
                enqueue(conn, "events", f"kept {i}".encode(), key="k")
        with pytest.raises(RuntimeError), conn.transaction():
            enqueue(conn, "events", b"rolled back")
            raise RuntimeError("the change failed")
    relay = OutboxRelay(settings, poll_s=0.2).start()
    try:
        assert read(settings, "events", 5) == [f"kept {i}".encode() for i in range(5)]
        with psycopg.connect(settings.postgres_dsn) as conn, conn.transaction():
            enqueue(conn, "events", b"later")
        assert read(settings, "events", 6)[-1] == b"later"
    finally:
        relay.stop()
    with psycopg.connect(settings.postgres_dsn) as conn:
        unpublished = conn.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        ).fetchone()
    assert unpublished == (0,)

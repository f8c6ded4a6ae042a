"""The smoke round trip: Avro messages through Kafka into PostgreSQL and MongoDB.

``tomstream roundtrip run`` proves a deployment end to end with the same consumer core the
services use: it produces ``ping`` messages, consumes them until idle, and counts what landed
in both stores. ``produce`` and ``consume`` are its two halves, for tests that kill the
consumer mid-way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from tomstream import avro
from tomstream.config import Settings
from tomstream.consumer import BatchHandler, ConsumerStats, Decoded, Incoming, run_consumer
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer
from tomstream.storage.mongo import insert_new, mongo_database
from tomstream.storage.postgres import Postgres

SERVICE = "roundtrip"
TOPIC = "roundtrip"
SCHEMA = "tomstream.roundtrip.ping"
COLLECTION = "roundtrip_messages"


class Ping(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    message_id: int
    payload: str
    produced_at: datetime

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Ping:
        return cls(
            message_id=record["messageId"],
            payload=record["payload"],
            produced_at=record["producedAt"],
        )

    def to_record(self) -> dict[str, object]:
        return {
            "messageId": self.message_id,
            "payload": self.payload,
            "producedAt": self.produced_at,
        }


class RoundTripHandler(BatchHandler[Ping]):
    """Stores each ping as a row (PostgreSQL) and a document (MongoDB), both keyed on its id."""

    def __init__(self, settings: Settings) -> None:
        self._postgres = Postgres(settings.postgres_dsn, application_name="tomstream-roundtrip")
        self._collection = mongo_database(settings)[COLLECTION]

    def decode(self, message: Incoming) -> Ping:
        return Ping.from_record(avro.decode(SCHEMA, message.payload))

    def store(self, batch: Sequence[Decoded[Ping]]) -> None:
        rows = [
            (
                item.value.message_id,
                item.value.payload,
                item.value.produced_at,
                item.message.topic,
                item.message.partition,
                item.message.offset,
            )
            for item in batch
        ]
        with self._postgres.transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO roundtrip_message "
                "(message_id, payload, produced_at, topic, kafka_partition, kafka_offset) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING",
                rows,
            )
        insert_new(
            self._collection,
            [
                {
                    "_id": item.value.message_id,
                    "payload": item.value.payload,
                    "raw": item.message.payload,
                    "topic": item.message.topic,
                    "partition": item.message.partition,
                    "offset": item.message.offset,
                }
                for item in batch
            ],
        )

    def close(self) -> None:
        self._postgres.close()


def produce(settings: Settings, count: int, first_id: int, topic: str | None = None) -> None:
    """Produce ``count`` pings with ids ``first_id`` … ``first_id + count - 1``."""
    topic = topic or settings.topic(TOPIC)
    ensure_topics(settings, [topic])
    now = datetime.now(UTC)
    deliver(
        make_producer(settings),
        (
            Outgoing(topic, avro.encode(SCHEMA, ping(message_id, now).to_record()), str(message_id))
            for message_id in range(first_id, first_id + count)
        ),
        timeout_s=60,
    )


def ping(message_id: int, produced_at: datetime) -> Ping:
    return Ping(message_id=message_id, payload=f"ping {message_id}", produced_at=produced_at)


def consume(
    settings: Settings,
    *,
    topic: str | None = None,
    group_id: str | None = None,
    exit_on_idle_s: float | None = None,
    batch_size: int = 200,
) -> ConsumerStats:
    return run_consumer(
        RoundTripHandler(settings),
        settings=settings,
        service=SERVICE,
        topics=[topic or settings.topic(TOPIC)],
        group_id=group_id,
        batch_size=batch_size,
        exit_on_idle_s=exit_on_idle_s,
    )


@dataclass(frozen=True)
class Landed:
    rows: int
    documents: int


def count_landed(settings: Settings, first_id: int, count: int) -> Landed:
    """How many of the ids ``first_id`` … ``first_id + count - 1`` are in each store."""
    last_id = first_id + count - 1
    postgres = Postgres(settings.postgres_dsn)
    try:
        row = (
            postgres.connection()
            .execute(
                "SELECT count(*) FROM roundtrip_message WHERE message_id BETWEEN %s AND %s",
                (first_id, last_id),
            )
            .fetchone()
        )
    finally:
        postgres.close()
    documents = mongo_database(settings)[COLLECTION].count_documents(
        {"_id": {"$gte": first_id, "$lte": last_id}}
    )
    return Landed(rows=int(row[0]) if row else 0, documents=documents)


def new_first_id() -> int:
    """Ids for a new run: from the clock, so runs never overlap."""
    return time.time_ns() // 1000 * 1000

"""Where classifications are stored: classifiers, one row per message, the raw message.

Used by the broker_poll consumer and by the API's push path, so both deduplicate the
same way: the same classifier saying the same thing about the same alert is one row.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from pymongo.database import Database

from tomstream.services.broker_poll.archive import RawArchive
from tomstream.storage.beside import Beside
from tomstream.storage.postgres import FLOAT4, INT2, Postgres, binary_array, copy_insert

ClassifierKey = tuple[str, str, str, str]  # broker name, broker version, name, params

_MESSAGE_COLUMNS = (
    "classifier_id", "alert_id", "diasource_id", "content_hash", "class_ids", "probabilities",
    "elasticc_publish_time", "broker_ingest_time", "broker_publish_time", "kafka_timestamp",
    "ingested_at", "topic", "kafka_partition", "kafka_offset",
)  # fmt: skip


@dataclass(slots=True)  # not frozen: cheaper to build, once per message
class ClassificationMessage:
    """One brokerClassification message, wherever it came from."""

    alert_id: int
    diasource_id: int
    classifier: ClassifierKey
    class_ids: tuple[int, ...]
    probabilities: tuple[float, ...]
    elasticc_publish_time: datetime | None
    broker_ingest_time: datetime | None
    broker_publish_time: datetime | None
    kafka_timestamp: datetime | None
    topic: str | None
    partition: int | None
    offset: int | None
    payload: bytes | None  # the exact bytes received, when it came from Kafka
    #: What makes two deliveries the same classification (timestamps do not); computed once,
    #: as the PostgreSQL row (and a pushed message's raw document) are keyed on it.
    content_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Packed, not repr()'d: formatting 20 floats as text was most of a message's cost.
        n = len(self.class_ids)
        numbers = struct.pack(f"<q{n}i{n}d", self.alert_id, *self.class_ids, *self.probabilities)
        names = "\0".join(self.classifier).encode()
        self.content_hash = hashlib.sha256(numbers + names).digest()


class ClassificationStore:
    def __init__(self, postgres: Postgres, mongo: Database[dict[str, Any]]) -> None:
        self._postgres = postgres
        self._archive = RawArchive(mongo)
        self._classifier_ids: dict[ClassifierKey, int] = {}
        self._beside = Beside("broker-poll-mongo")

    def write(self, messages: Sequence[ClassificationMessage], ingested_at: datetime) -> int:
        """Store messages idempotently; return how many were new."""
        with (
            self._beside.running(self._archive.store, messages, ingested_at),
            self._postgres.transaction() as conn,
        ):
            ids = self._classifier_ids_for({m.classifier for m in messages}, conn)
            inserted = copy_insert(
                conn,
                "broker_message",
                _MESSAGE_COLUMNS,
                (_message_row(m, ids[m.classifier], ingested_at) for m in messages),
                on_conflict="ON CONFLICT (alert_id, classifier_id, content_hash) DO NOTHING",
                prepacked=("class_ids", "probabilities"),
            )
        # Remembered only now: ids from a rolled-back transaction would not exist.
        self._classifier_ids.update(ids)
        return inserted

    def close(self) -> None:
        self._beside.close()

    def _classifier_ids_for(
        self, keys: set[ClassifierKey], conn: psycopg.Connection
    ) -> dict[ClassifierKey, int]:
        ids = {key: self._classifier_ids[key] for key in keys if key in self._classifier_ids}
        missing = sorted(keys - ids.keys())
        if missing:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO classifier (broker_name, broker_version, classifier_name, "
                    "classifier_params) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    missing,
                )
                for key in missing:
                    row = cursor.execute(
                        "SELECT classifier_id FROM classifier WHERE broker_name = %s AND "
                        "broker_version = %s AND classifier_name = %s AND classifier_params = %s",
                        key,
                    ).fetchone()
                    assert row is not None  # inserted or already there, in this transaction
                    ids[key] = row[0]
        return ids


def _message_row(
    m: ClassificationMessage, classifier_id: int, ingested_at: datetime
) -> tuple[Any, ...]:
    return (
        classifier_id, m.alert_id, m.diasource_id, m.content_hash,
        binary_array(INT2, m.class_ids), binary_array(FLOAT4, m.probabilities),
        m.elasticc_publish_time, m.broker_ingest_time,
        m.broker_publish_time, m.kafka_timestamp, ingested_at, m.topic, m.partition, m.offset,
    )  # fmt: skip

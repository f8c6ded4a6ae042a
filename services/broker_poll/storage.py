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
from bson import Binary
from pymongo.collection import Collection

from tomstream.storage.beside import Beside
from tomstream.storage.mongo import insert_new
from tomstream.storage.postgres import Postgres, copy_insert

RAW_BROKER_MESSAGES = "broker_messages"

ClassifierKey = tuple[str, str, str, str]  # broker name, broker version, name, params

_MESSAGE_COLUMNS = (
    "classifier_id", "alert_id", "diasource_id", "content_hash", "class_ids", "probabilities",
    "elasticc_publish_time", "broker_ingest_time", "broker_publish_time", "kafka_timestamp",
    "ingested_at", "topic", "kafka_partition", "kafka_offset",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
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
    #: as both the PostgreSQL row and the raw document are keyed on it.
    content_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        # Packed, not repr()'d: formatting 20 floats as text was most of a message's cost.
        n = len(self.class_ids)
        numbers = struct.pack(f"<q{n}i{n}d", self.alert_id, *self.class_ids, *self.probabilities)
        names = "\0".join(self.classifier).encode()
        object.__setattr__(self, "content_hash", hashlib.sha256(numbers + names).digest())


class ClassificationStore:
    def __init__(self, postgres: Postgres, raw: Collection[dict[str, Any]]) -> None:
        self._postgres = postgres
        self._raw = raw
        self._classifier_ids: dict[ClassifierKey, int] = {}
        self._beside = Beside("broker-poll-mongo")

    def write(self, messages: Sequence[ClassificationMessage], ingested_at: datetime) -> int:
        """Store messages idempotently; return how many were new."""
        raw = [raw_document(m, ingested_at) for m in messages]
        with self._beside.running(insert_new, self._raw, raw), self._postgres.transaction() as conn:
            ids = self._classifier_ids_for({m.classifier for m in messages}, conn)
            inserted = copy_insert(
                conn,
                "broker_message",
                _MESSAGE_COLUMNS,
                (_message_row(m, ids[m.classifier], ingested_at) for m in messages),
                on_conflict="ON CONFLICT (classifier_id, alert_id, content_hash) DO NOTHING",
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
        classifier_id, m.alert_id, m.diasource_id, m.content_hash, list(m.class_ids),
        list(m.probabilities), m.elasticc_publish_time, m.broker_ingest_time,
        m.broker_publish_time, m.kafka_timestamp, ingested_at, m.topic, m.partition, m.offset,
    )  # fmt: skip


def raw_document(m: ClassificationMessage, ingested_at: datetime) -> dict[str, Any]:
    """The message as received, keyed by where it was received.

    A Kafka message's natural id is its position, so a replay or a retry finds the same
    ``_id``; positions also sort, which keeps FerretDB's index inserts local (random keys
    such as hashes cost it ~40 % more CPU per document). A pushed message has no position:
    its content decides.
    """
    if m.topic is None or m.partition is None or m.offset is None:
        key = f"push:{m.content_hash.hex()}"
    else:
        key = f"{m.topic}:{m.partition:05d}:{m.offset:020d}"
    return {
        "_id": key,
        "alertId": m.alert_id,
        "diaSourceId": m.diasource_id,
        "brokerName": m.classifier[0],
        "classifierName": m.classifier[2],
        "contentHash": Binary(m.content_hash),
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "ingestedAt": ingested_at,
        "payload": Binary(m.payload) if m.payload is not None else None,
    }

"""``PUT elasticc2/brokermessage/``: brokers push classifications over HTTP.

They are stored by broker_poll's own store, so a classification pushed here and the same one
read from Kafka are one row (same classifier, alert and content). The raw message, Avro-encoded
from the JSON received, is kept in MongoDB's ``pushed_broker_messages``, keyed by its content.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tomstream import avro
from tomstream.classification_reader import read_schemaless_classification
from tomstream.services.broker_poll.storage import ClassificationStore
from tomstream.services.spectra_api.context import ApiContext
from tomstream.services.spectra_api.models import BrokerMessageIn
from tomstream.storage.postgres import Postgres

PUSH_TOPIC = "REST_push"  # what the DESC TOM recorded as the "topic" of a pushed message


def _utc_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _record(message: BrokerMessageIn) -> dict[str, Any]:
    """The brokerClassification record, with the (optional) push time the DESC TOM accepted."""
    record = message.model_dump()
    for key in ("elasticcPublishTimestamp", "brokerIngestTimestamp", "brokerPublishTimestamp"):
        record[key] = _utc_ms(record[key])
    return record


def _store(context: ApiContext) -> ClassificationStore:
    if context.push_store is None:
        context.push_postgres = Postgres(
            context.settings.postgres_dsn, application_name="tomstream-api-push"
        )
        context.push_store = ClassificationStore(context.push_postgres, context.mongo)
    store: ClassificationStore = context.push_store
    return store


def push(context: ApiContext, messages: list[BrokerMessageIn]) -> dict[str, int]:
    """Store the messages; the DESC answer: the first new message's id (-1: none) and count."""
    from tomstream.services.broker_poll.service import classification_message, observe_delays

    ingested_at = datetime.now(UTC)
    stored = []
    for message in messages:
        record = _record(message)
        # Read back from its own Avro encoding: the probabilities become the 32-bit floats a
        # Kafka message carries, so this and the same classification read from Kafka hash
        # (and deduplicate) alike.
        payload = avro.encode(avro.BROKER_CLASSIFICATION, record)
        published = record["brokerPublishTimestamp"]
        stored.append(
            classification_message(
                read_schemaless_classification(payload),
                kafka_timestamp=published,
                topic=PUSH_TOPIC,
                payload=payload,
                broker_publish_time=published,
            )
        )
    with context.push_lock:
        loaded = _store(context).write(stored, ingested_at)
    observe_delays(stored, ingested_at)
    first = -1
    if loaded:
        # The rows this call inserted are the ones stamped with its ingest time.
        with context.connection() as conn:
            row = conn.execute(
                "SELECT min(broker_message_id) FROM broker_message "
                "WHERE alert_id = ANY(%s) AND ingested_at = %s",
                ([m.alert_id for m in stored], ingested_at),
            ).fetchone()
        first = row[0] if row and row[0] is not None else -1
    return {"brokerMessageId": first, "num_loaded": loaded}

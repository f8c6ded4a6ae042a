"""The ingest service: alert topics → MongoDB (raw alerts) and PostgreSQL (rows).

Where an alert enters tomstream: :meth:`IngestHandler.decode` reads one Kafka message (plain
ELAsTiCC2 or Confluent-framed Rubin), :meth:`IngestHandler.store` writes a batch of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tomstream import avro
from tomstream.config import Settings
from tomstream.consumer import BatchHandler, ConsumerStats, Decoded, Incoming, run_consumer
from tomstream.services.ingest import BATCH_SIZE
from tomstream.services.ingest.alerts import AlertRows, alert_rows
from tomstream.services.ingest.storage import IngestStore, Receipt
from tomstream.storage.mongo import mongo_database
from tomstream.storage.postgres import Postgres

SERVICE = "ingest"
ALERT_TOPICS = ("alerts-wfd", "alerts-ddf-full", "alerts-ddf-limited")


class IngestHandler(BatchHandler[AlertRows]):
    def __init__(self, settings: Settings) -> None:
        self._postgres = Postgres(settings.postgres_dsn, application_name="tomstream-ingest")
        self._store = IngestStore(self._postgres, mongo_database(settings))

    def decode(self, message: Incoming) -> AlertRows:
        return alert_rows(avro.decode_alert(message.payload))

    def store(self, batch: Sequence[Decoded[AlertRows]]) -> None:
        now = datetime.now(UTC)
        self._store.write(
            [
                Receipt(
                    rows=item.value,
                    topic=item.message.topic,
                    partition=item.message.partition,
                    offset=item.message.offset,
                    kafka_timestamp=item.message.timestamp,
                    ingested_at=now,
                    payload=item.message.payload,
                )
                for item in batch
            ]
        )

    def close(self) -> None:
        self._store.close()
        self._postgres.close()


def run(
    settings: Settings,
    *,
    extra_topics: Sequence[str] = (),
    group_id: str | None = None,
    exit_on_idle_s: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> ConsumerStats:
    return run_consumer(
        IngestHandler(settings),
        settings=settings,
        service=SERVICE,
        topics=[*(settings.topic(t) for t in ALERT_TOPICS), *extra_topics],
        group_id=group_id,
        batch_size=batch_size,
        exit_on_idle_s=exit_on_idle_s,
    )

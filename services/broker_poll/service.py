"""The broker_poll service: brokers' classification topics → PostgreSQL and MongoDB.

Where a new broker plugs in: an entry in the broker config file (see ``config.py``); one
consumer per broker, each with its own Kafka connection, all in this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Histogram

from services.broker_poll.config import BrokerPollConfig, BrokerSource
from services.broker_poll.storage import (
    RAW_BROKER_MESSAGES,
    ClassificationMessage,
    ClassificationStore,
)
from tomstream import avro
from tomstream.config import Settings
from tomstream.consumer import (
    BatchHandler,
    ConsumerSpec,
    ConsumerStats,
    Decoded,
    Incoming,
    default_group_id,
    run_consumers,
)
from tomstream.storage.mongo import mongo_database
from tomstream.storage.postgres import Postgres

SERVICE = "broker-poll"

_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
FULL_DELAY = Histogram(
    "tomstream_classification_full_delay_seconds",
    "Our ingest time minus the alert's publish time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)
BROKER_DELAY = Histogram(
    "tomstream_classification_broker_delay_seconds",
    "Classification Kafka time minus the alert's publish time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)
TOM_DELAY = Histogram(
    "tomstream_classification_tom_delay_seconds",
    "Our ingest time minus the classification's Kafka time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)


def message_from_record(
    record: dict,
    *,
    kafka_timestamp: datetime | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    payload: bytes | None = None,
) -> ClassificationMessage:
    """A decoded brokerClassification record (v0_9_1) and where it came from."""
    classifications = record["classifications"]
    return ClassificationMessage(
        alert_id=record["alertId"],
        diasource_id=record["diaSourceId"],
        classifier=(
            record["brokerName"],
            record["brokerVersion"],
            record["classifierName"],
            record["classifierParams"],
        ),
        class_ids=tuple(c["classId"] for c in classifications),
        probabilities=tuple(c["probability"] for c in classifications),
        elasticc_publish_time=record["elasticcPublishTimestamp"],
        broker_ingest_time=record.get("brokerIngestTimestamp"),
        broker_publish_time=record.get("brokerPublishTimestamp"),
        kafka_timestamp=kafka_timestamp,
        topic=topic,
        partition=partition,
        offset=offset,
        payload=payload,
    )


class BrokerPollHandler(BatchHandler[ClassificationMessage]):
    def __init__(self, settings: Settings) -> None:
        self._postgres = Postgres(settings.postgres_dsn, application_name="tomstream-broker-poll")
        self._store = ClassificationStore(
            self._postgres, mongo_database(settings)[RAW_BROKER_MESSAGES]
        )

    def decode(self, message: Incoming) -> ClassificationMessage:
        record = avro.decode_broker_message(message.payload)
        return message_from_record(
            record,
            kafka_timestamp=message.timestamp,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            payload=message.payload,
        )

    def store(self, batch: Sequence[Decoded[ClassificationMessage]]) -> None:
        now = datetime.now(UTC)
        messages = [item.value for item in batch]
        self._store.write(messages, now)
        observe_delays(messages, now)

    def close(self) -> None:
        self._store.close()
        self._postgres.close()


def observe_delays(messages: Sequence[ClassificationMessage], ingested_at: datetime) -> None:
    """The three delay histograms, per broker and classifier (label lookups once per batch)."""
    histograms: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
    for m in messages:
        labels = (m.classifier[0], m.classifier[2])
        if labels not in histograms:
            histograms[labels] = tuple(
                h.labels(*labels) for h in (FULL_DELAY, BROKER_DELAY, TOM_DELAY)
            )
        full, broker, tom = histograms[labels]
        published = m.elasticc_publish_time
        if published is not None:
            full.observe((ingested_at - published).total_seconds())
            if m.kafka_timestamp is not None:
                broker.observe((m.kafka_timestamp - published).total_seconds())
        if m.kafka_timestamp is not None:
            tom.observe((ingested_at - m.kafka_timestamp).total_seconds())


def _group_id(
    settings: Settings, broker: BrokerSource, override: str | None, *, several: bool
) -> str:
    """One consumer group per broker: brokers never share (or rebalance) partitions."""
    if override:
        return f"{override}-{broker.name}" if several else override
    return broker.group_id or f"{default_group_id(settings, SERVICE)}-{broker.name}"


def run(
    settings: Settings,
    config: BrokerPollConfig,
    *,
    group_id: str | None = None,
    exit_on_idle_s: float | None = None,
    batch_size: int = 1000,
) -> list[ConsumerStats]:
    specs = [
        ConsumerSpec(
            handler=BrokerPollHandler(settings),
            service=SERVICE,
            topics=broker.topic_names(settings),
            group_id=_group_id(settings, broker, group_id, several=len(config.brokers) > 1),
            batch_size=batch_size,
            kafka_config=broker.kafka_config(),
        )
        for broker in config.brokers
    ]
    return run_consumers(specs, settings=settings, exit_on_idle_s=exit_on_idle_s)

"""The broker_poll service: brokers' classification topics → PostgreSQL and MongoDB.

Where a new broker plugs in: an entry in the broker config file (see ``config.py``); one
consumer per broker, each with its own Kafka connection, all in this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tomstream.classification_reader import Classification, read_classification
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
from tomstream.metrics import BatchHistogram
from tomstream.services.broker_poll import BATCH_SIZE
from tomstream.services.broker_poll.config import BrokerPollConfig, BrokerSource
from tomstream.services.broker_poll.storage import ClassificationMessage, ClassificationStore
from tomstream.storage.mongo import mongo_database
from tomstream.storage.postgres import Postgres

SERVICE = "broker-poll"

_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
FULL_DELAY = BatchHistogram(
    "tomstream_classification_full_delay_seconds",
    "Our ingest time minus the alert's publish time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)
BROKER_DELAY = BatchHistogram(
    "tomstream_classification_broker_delay_seconds",
    "Classification Kafka time minus the alert's publish time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)
TOM_DELAY = BatchHistogram(
    "tomstream_classification_tom_delay_seconds",
    "Our ingest time minus the classification's Kafka time",
    ["broker", "classifier"],
    buckets=_DELAY_BUCKETS,
)


def classification_message(
    c: Classification,
    *,
    kafka_timestamp: datetime | None,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    payload: bytes | None = None,
    broker_publish_time: datetime | None = None,
) -> ClassificationMessage:
    """A classification read from Kafka (or pushed) and where it came from."""
    return ClassificationMessage(
        alert_id=c.alert_id,
        diasource_id=c.diasource_id,
        classifier=(c.broker_name, c.broker_version, c.classifier_name, c.classifier_params),
        class_ids=c.class_ids,
        probabilities=c.probabilities,
        elasticc_publish_time=c.elasticc_publish_time,
        broker_ingest_time=c.broker_ingest_time,
        broker_publish_time=broker_publish_time,  # not in the Avro schema: pushes may give it
        kafka_timestamp=kafka_timestamp,
        topic=topic,
        partition=partition,
        offset=offset,
        payload=payload,
    )


class BrokerPollHandler(BatchHandler[ClassificationMessage]):
    def __init__(self, settings: Settings) -> None:
        self._postgres = Postgres(settings.postgres_dsn, application_name="tomstream-broker-poll")
        self._store = ClassificationStore(self._postgres, mongo_database(settings))

    def decode(self, message: Incoming) -> ClassificationMessage:
        return classification_message(
            read_classification(message.payload),
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
    """The three delay histograms, per broker and classifier, a batch at a time."""
    delays: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {}
    for m in messages:
        labels = (m.classifier[0], m.classifier[2])
        if labels not in delays:
            delays[labels] = ([], [], [])
        full, broker, tom = delays[labels]
        published = m.elasticc_publish_time
        if published is not None:
            full.append((ingested_at - published).total_seconds())
            if m.kafka_timestamp is not None:
                broker.append((m.kafka_timestamp - published).total_seconds())
        if m.kafka_timestamp is not None:
            tom.append((ingested_at - m.kafka_timestamp).total_seconds())
    for labels, (full, broker, tom) in delays.items():
        FULL_DELAY.observe_many(labels, full)
        BROKER_DELAY.observe_many(labels, broker)
        TOM_DELAY.observe_many(labels, tom)


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
    batch_size: int = BATCH_SIZE,
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

"""Counts of everything tomstream stores: ``tomstream stats``."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from tomstream.config import Settings
from tomstream.consumer import DLQ_SUFFIX
from tomstream.services.broker_poll.archive import count_raw_messages
from tomstream.services.ingest.storage import RAW_ALERTS
from tomstream.storage.mongo import mongo_database
from tomstream.storage.postgres import Postgres

_POSTGRES_COUNTS = {
    "objects": "SELECT count(*) FROM diaobject",
    "sources": "SELECT count(*) FROM diasource",
    "forced_sources": "SELECT count(*) FROM diaforcedsource",
    "alerts": "SELECT count(DISTINCT alert_id) FROM alert_receipt",
    "classifiers": "SELECT count(*) FROM classifier",
    "broker_messages": "SELECT count(*) FROM broker_message",
    # Each message holds several (classId, probability) pairs.
    "classifications": "SELECT coalesce(sum(cardinality(class_ids)), 0) FROM broker_message",
}


def collect(settings: Settings) -> dict[str, int]:
    """Every count, as one flat mapping (the keys of ``tomstream stats --json``)."""
    postgres = Postgres(settings.postgres_dsn, application_name="tomstream-stats")
    try:
        conn = postgres.connection()
        counts = {
            name: int(conn.execute(query).fetchone()[0])  # type: ignore[index]
            for name, query in _POSTGRES_COUNTS.items()
        }
    finally:
        postgres.close()
    mongo = mongo_database(settings)
    counts["raw_alerts"] = mongo[RAW_ALERTS].count_documents({})
    counts["raw_broker_messages"] = count_raw_messages(mongo)
    counts["dead_letters"] = count_dead_letters(settings)
    return counts


def count_dead_letters(settings: Settings) -> int:
    """Distinct messages in this deployment's dead-letter topics.

    Dead letters are delivered at least once, so they are counted by their source (topic,
    partition, offset), not by the copies in the topic.
    """
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"tomstream-stats-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        topics = consumer.list_topics(timeout=30).topics
        partitions = [
            TopicPartition(name, index)
            for name, meta in topics.items()
            if name.startswith(settings.topic_prefix) and name.endswith(DLQ_SUFFIX)
            for index in meta.partitions
        ]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low:
                ends[(tp.topic, tp.partition)] = high
        if not ends:
            return 0
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        sources: set[tuple[bytes, ...]] = set()
        remaining = dict(ends)
        while remaining:
            message = consumer.poll(10)
            if message is None:
                break  # nothing more arrives: count what was read
            if message.error():
                continue
            headers = dict(message.headers() or [])
            sources.add(
                tuple(
                    headers.get(name, b"")
                    for name in ("dlq.source.topic", "dlq.source.partition", "dlq.source.offset")
                )
            )
            key = (message.topic(), message.partition())
            if message.offset() + 1 >= remaining.get(key, 0):
                remaining.pop(key, None)
        return len(sources)
    finally:
        consumer.close()

"""Kafka clients configured from the settings: producers, topic creation."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tomstream.config import Settings

log = structlog.get_logger(__name__)


def make_producer(settings: Settings, **overrides: object) -> Producer:
    """An idempotent producer that waits for every replica: a delivered message is durable."""
    config: dict[str, object] = {
        **settings.kafka_client_config(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return Producer(config)


def ensure_topics(settings: Settings, names: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet (an existing topic is left as it is)."""
    admin = AdminClient(settings.kafka_client_config())
    wanted = sorted(set(names))
    existing = admin.list_topics(timeout=30).topics
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions) for name in missing], operation_timeout=30
    )
    for name, future in futures.items():
        try:
            future.result(timeout=60)
            log.info("created topic", topic=name, partitions=partitions)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                log.warning("may not create topic; expecting it to exist", topic=name)
                continue
            raise

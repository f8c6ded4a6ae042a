"""Kafka clients configured from the settings: producers, topic creation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: str | bytes | None = None
    headers: list[tuple[str, bytes]] | None = None


def deliver(producer: Producer, messages: Iterable[Outgoing], timeout_s: float = 30.0) -> int:
    """Produce messages and wait until Kafka acknowledged every one; return how many.

    Raises KafkaException if any was refused or not acknowledged in time, so a caller that
    commits only after this returns never commits past an undelivered message.
    """
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error.str())

    count = 0
    for message in messages:
        while True:
            try:
                producer.produce(
                    message.topic,
                    message.value,
                    key=message.key,
                    headers=message.headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)  # serve delivery callbacks, so the local queue does not fill up
        count += 1
    unacknowledged = producer.flush(timeout_s)
    if failures or unacknowledged:
        raise KafkaException(
            KafkaError(
                KafkaError._MSG_TIMED_OUT if unacknowledged else KafkaError._FAIL,
                f"{len(failures)} refused, {unacknowledged} unacknowledged after {timeout_s} s: "
                f"{failures[:3]}",
            )
        )
    return count


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

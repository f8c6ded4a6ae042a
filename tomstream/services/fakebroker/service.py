"""The fake broker service: alerts in, two classification messages per alert out.

Its "store" is producing to the ``classifications`` topic: the consumer core commits the
alerts' offsets only once Kafka has acknowledged every classification of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tomstream import avro
from tomstream.config import Settings
from tomstream.consumer import BatchHandler, ConsumerStats, Decoded, Incoming, run_consumer
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer
from tomstream.services.fakebroker.classify import classification_messages

SERVICE = "fakebroker"
INPUT_TOPICS = ("alerts-wfd", "alerts-ddf-full")
OUTPUT_TOPIC = "classifications"


@dataclass(frozen=True, slots=True)
class AlertToClassify:
    alert_id: int
    diasource_id: int
    published: datetime


class FakeBrokerHandler(BatchHandler[AlertToClassify]):
    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topic(OUTPUT_TOPIC)
        ensure_topics(settings, [self._topic])
        self._producer = make_producer(settings)

    def decode(self, message: Incoming) -> AlertToClassify:
        record = avro.decode_alert(message.payload).record
        # elasticcPublishTimestamp is the alert's Kafka timestamp, as the DESC broker test does.
        # (A message without a time, which Kafka >= 0.10 never delivers, gets the epoch.)
        published = message.timestamp or datetime.fromtimestamp(0, UTC)
        return AlertToClassify(
            alert_id=record.get("alertId", record["diaSource"]["diaSourceId"]),
            diasource_id=record["diaSource"]["diaSourceId"],
            published=published,
        )

    def store(self, batch: Sequence[Decoded[AlertToClassify]]) -> None:
        now = datetime.now(UTC)
        deliver(
            self._producer,
            (
                Outgoing(
                    self._topic,
                    avro.encode(avro.BROKER_CLASSIFICATION, record),
                    key=str(item.value.alert_id),
                )
                for item in batch
                for record in classification_messages(
                    item.value.alert_id, item.value.diasource_id, item.value.published, now
                )
            ),
        )


def run(
    settings: Settings,
    *,
    group_id: str | None = None,
    exit_on_idle_s: float | None = None,
    batch_size: int = 500,
) -> ConsumerStats:
    return run_consumer(
        FakeBrokerHandler(settings),
        settings=settings,
        service=SERVICE,
        topics=[settings.topic(t) for t in INPUT_TOPICS],
        group_id=group_id,
        batch_size=batch_size,
        exit_on_idle_s=exit_on_idle_s,
    )

"""The fake facility: takes cadence triggers, reports PENDING and then a terminal status.

Each request id is handled once per process (a redelivered trigger is skipped), and what
happens to a request is drawn from a generator seeded with ``--seed`` and the request id, so a
restart that reads a trigger again reports the same observation id and the same outcome, which
the cadence service recognises as a duplicate. Its store is Kafka: the triggers' offsets are
committed only after both statuses of every request in the batch are acknowledged.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

from tomstream.config import Settings
from tomstream.consumer import BatchHandler, ConsumerStats, Decoded, Incoming, run_consumer
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer
from tomstream.services.cadence.facilities import FAKE, LCO_STATUSES
from tomstream.services.cadence.service import STATUS_TOPIC, TRIGGER_TOPIC, StatusEvent, Trigger

SERVICE = "fake-facility"
REMEMBERED = 100_000  # request ids remembered to skip redeliveries (oldest forgotten first)
# The failure words a facility reports by itself (CANCELED comes from a person).
FAILURES = sorted(LCO_STATUSES.failed - {"CANCELED"})


class FakeFacility(BatchHandler[Trigger]):
    def __init__(
        self, settings: Settings, success_rate: float, latency_s: float, seed: int
    ) -> None:
        self._topic = settings.topic(STATUS_TOPIC)
        ensure_topics(settings, [self._topic])
        self._producer = make_producer(settings)
        self._success_rate = success_rate
        self._latency_s = latency_s
        self._seed = seed
        self._seen: OrderedDict[str, None] = OrderedDict()

    def decode(self, message: Incoming) -> Trigger:
        return Trigger.from_avro(message.payload)

    def store(self, batch: Sequence[Decoded[Trigger]]) -> None:
        fresh = list(
            {
                item.value.request_id: item.value
                for item in batch
                if item.value.request_id not in self._seen
            }.values()
        )
        if not fresh:
            return
        self._report(fresh, terminal=False)
        time.sleep(self._latency_s)  # the whole batch "observes" at once
        self._report(fresh, terminal=True)
        for trigger in fresh:
            self._seen[trigger.request_id] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)

    def _report(self, triggers: Sequence[Trigger], *, terminal: bool) -> None:
        now = datetime.now(UTC)
        deliver(
            self._producer,
            (
                Outgoing(self._topic, self.status(t, now, terminal).to_avro(), t.request_id)
                for t in triggers
            ),
        )

    def status(self, trigger: Trigger, now: datetime, terminal: bool) -> StatusEvent:
        """The status event of a request (its outcome depends only on seed and request id)."""
        draw = random.Random(f"{self._seed}:{trigger.request_id}")
        observation_id = f"FAKE-{draw.randrange(10**12):012d}"
        succeeded = draw.random() < self._success_rate
        status = "PENDING"
        if terminal:
            status = "COMPLETED" if succeeded else draw.choice(FAILURES)
        return StatusEvent(
            request_id=trigger.request_id,
            facility=FAKE,
            observation_id=observation_id,
            status=status,
            scheduled_start=now if terminal and succeeded else trigger.window.start,
            scheduled_end=trigger.window.end,
            event_time=now,
        )


def run(
    settings: Settings,
    *,
    success_rate: float,
    latency_s: float,
    seed: int,
    group_id: str | None = None,
    exit_on_idle_s: float | None = None,
) -> ConsumerStats:
    return run_consumer(
        FakeFacility(settings, success_rate, latency_s, seed),
        settings=settings,
        service=SERVICE,
        topics=[settings.topic(TRIGGER_TOPIC)],
        group_id=group_id,
        batch_size=500,
        batch_time_s=0.05,
        exit_on_idle_s=exit_on_idle_s,
    )

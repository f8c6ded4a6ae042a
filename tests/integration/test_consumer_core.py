"""The shared consumer core against the real Kafka, PostgreSQL and MongoDB-wire servers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

import psycopg
import pytest
from conftest import read_topic

from tomstream import metrics
from tomstream.config import Settings
from tomstream.consumer import Decoded, run_consumer
from tomstream.kafka import ensure_topics, make_producer
from tomstream.shell import roundtrip

pytestmark = pytest.mark.integration

TOMSTREAM = [sys.executable, "-m", "tomstream"]


def _fresh_topic(settings: Settings) -> str:
    topic = settings.topic(f"core-{uuid.uuid4().hex[:8]}")
    ensure_topics(settings, [topic])
    return topic


def _produce_raw(settings: Settings, topic: str, payloads: Sequence[bytes]) -> None:
    producer = make_producer(settings)
    for payload in payloads:
        producer.produce(topic, payload)
    assert producer.flush(30) == 0


def _landed(settings: Settings, first_id: int, count: int) -> tuple[int, int]:
    landed = roundtrip.count_landed(settings, first_id, count)
    return landed.rows, landed.documents


def test_sigkill_mid_stream_then_restart_stores_each_message_exactly_once(
    test_settings: Settings, service_env: dict[str, str]
) -> None:
    topic = _fresh_topic(test_settings)
    first_id, count = 7_000_000, 1000
    poison = b"\x02this is not an Avro ping"
    roundtrip.produce(test_settings, 500, first_id, topic)
    _produce_raw(test_settings, topic, [poison])
    roundtrip.produce(test_settings, 500, first_id + 500, topic)

    consume = [
        *TOMSTREAM, "roundtrip", "consume", "--topic", topic, "--group-id", f"g-{topic}",
        "--batch-size", "10", "--exit-on-idle", "5",
    ]  # fmt: skip
    first_run = subprocess.Popen(consume, env=service_env)
    try:
        deadline = time.monotonic() + 120
        rows = 0
        while rows == 0 and time.monotonic() < deadline and first_run.poll() is None:
            rows, _ = _landed(test_settings, first_id, count)
            time.sleep(0.01)
        first_run.send_signal(signal.SIGKILL)
        first_run.wait(30)
    finally:
        if first_run.poll() is None:
            first_run.kill()
    rows_at_kill, _ = _landed(test_settings, first_id, count)
    assert 0 < rows_at_kill < count, "the consumer must be killed mid-way"

    second_run = subprocess.run(consume, env=service_env, timeout=300, check=False)
    assert second_run.returncode == 0

    assert _landed(test_settings, first_id, count) == (count, count)
    dead = read_topic(test_settings, topic + ".dlq")
    assert dead, "the poison message must reach the dead-letter topic"
    for message in dead:  # at least once: a kill may repeat a dead letter, never change it
        headers = {key: value.decode() for key, value in message.headers()}
        assert message.value() == poison
        assert headers["dlq.source.topic"] == topic
        assert headers["dlq.source.partition"] == "0"
        assert headers["dlq.source.offset"] == "500"
        assert headers["dlq.stage"] == "decode"
        assert "DecodeError" in headers["dlq.error"]


class FlakyStore(roundtrip.RoundTripHandler):
    """Fails its first stores the way a PostgreSQL restart does."""

    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(settings)
        self.failures_left = failures
        self.calls = 0

    def store(self, batch: Sequence[Decoded[roundtrip.Ping]]) -> None:
        self.calls += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        super().store(batch)


def test_transient_store_failures_are_retried_without_loss(test_settings: Settings) -> None:
    topic = _fresh_topic(test_settings)
    first_id, count = 8_000_000, 300
    roundtrip.produce(test_settings, count, first_id, topic)
    retries_before = metrics.STORE_RETRIES.labels("flaky")._value.get()

    handler = FlakyStore(test_settings, failures=3)
    stats = run_consumer(
        handler,
        settings=test_settings,
        service="flaky",
        topics=[topic],
        batch_size=100,
        exit_on_idle_s=3,
    )

    assert _landed(test_settings, first_id, count) == (count, count)
    assert stats.stored == count
    assert stats.dead_lettered == 0
    assert metrics.STORE_RETRIES.labels("flaky")._value.get() - retries_before == 3
    assert handler.calls >= 3 + count // 100


class RefusesOneId(roundtrip.RoundTripHandler):
    """A store that refuses one message's data, as a constraint violation would."""

    def __init__(self, settings: Settings, refused_id: int) -> None:
        super().__init__(settings)
        self.refused_id = refused_id

    def store(self, batch: Sequence[Decoded[roundtrip.Ping]]) -> None:
        if any(item.value.message_id == self.refused_id for item in batch):
            raise psycopg.errors.NumericValueOutOfRange("value out of range")
        super().store(batch)


def test_a_message_the_store_refuses_is_isolated_and_dead_lettered(
    test_settings: Settings,
) -> None:
    topic = _fresh_topic(test_settings)
    first_id, count = 9_000_000, 50
    refused = first_id + 17
    roundtrip.produce(test_settings, count, first_id, topic)

    stats = run_consumer(
        RefusesOneId(test_settings, refused),
        settings=test_settings,
        service="refuses",
        topics=[topic],
        batch_size=count,
        exit_on_idle_s=3,
    )

    assert _landed(test_settings, first_id, count) == (count - 1, count - 1)
    assert (stats.stored, stats.dead_lettered) == (count - 1, 1)
    (dead,) = read_topic(test_settings, topic + ".dlq")
    headers = {key: value.decode() for key, value in dead.headers()}
    assert headers["dlq.stage"] == "store"
    assert headers["dlq.source.offset"] == "17"
    assert "NumericValueOutOfRange" in headers["dlq.error"]

"""The fake broker's classifiers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tomstream import avro
from tomstream.services.fakebroker.classify import (
    RANDOM_CLASSES,
    REST_CLASS,
    classification_messages,
    nugent,
    random_sn_type,
)


def test_nugent_is_certain_of_ia() -> None:
    assert nugent(1) == [(2222, 1.0)]


@pytest.mark.parametrize("alert_id", [1, 208089362038, 2**40 + 7])
def test_random_sn_type_gives_twenty_pairs_summing_to_one(alert_id: int) -> None:
    pairs = random_sn_type(alert_id)
    assert len(pairs) == 20
    assert sorted(c for c, _ in pairs[:-1]) == sorted(RANDOM_CLASSES)
    assert pairs[-1][0] == REST_CLASS
    assert all(p >= 0 for _, p in pairs)
    assert sum(p for _, p in pairs) == pytest.approx(1.0, abs=1e-12)


def test_random_sn_type_is_random_across_alerts_but_stable_per_alert() -> None:
    assert random_sn_type(42) == random_sn_type(42)
    assert random_sn_type(42) != random_sn_type(43)


def test_two_messages_per_alert_encode_with_the_v0_9_1_schema() -> None:
    published = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    messages = classification_messages(11, 11, published, published)
    assert [m["classifierName"] for m in messages] == ["NugentClassifier", "RandomSNType"]
    assert [m["classifierParams"] for m in messages] == ["100%", "Perfect"]
    assert sum(len(m["classifications"]) for m in messages) == 21  # 1 + 20 pairs per alert
    for message in messages:
        decoded = avro.decode_broker_message(avro.encode(avro.BROKER_CLASSIFICATION, message))
        assert decoded["brokerName"] == "FakeBroker"
        assert decoded["brokerVersion"] == "v1.0"
        assert decoded["elasticcPublishTimestamp"] == published

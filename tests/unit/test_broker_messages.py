"""What makes two classification messages the same, and how a raw message is keyed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from services.broker_poll.storage import ClassificationMessage, raw_document

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def _message(**changes: object) -> ClassificationMessage:
    base = ClassificationMessage(
        alert_id=1_234_500_001,
        diasource_id=1_234_500_001,
        classifier=("FakeBroker", "v1.0", "RandomSNType", "Perfect"),
        class_ids=(2222, 2223, 2242),
        probabilities=(0.25, 0.5, 0.25),
        elasticc_publish_time=NOW,
        broker_ingest_time=NOW,
        broker_publish_time=None,
        kafka_timestamp=NOW,
        topic="classifications",
        partition=3,
        offset=42,
        payload=b"\x00avro",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_timestamps_and_kafka_position_do_not_change_the_content_hash() -> None:
    again = _message(broker_ingest_time=None, kafka_timestamp=None, offset=43, partition=0)
    assert again.content_hash == _message().content_hash


def test_any_classification_difference_changes_the_content_hash() -> None:
    hashes = {
        _message().content_hash,
        _message(alert_id=1_234_500_002).content_hash,
        _message(classifier=("FakeBroker", "v1.0", "RandomSNType", "Other")).content_hash,
        _message(class_ids=(2222, 2242, 2223)).content_hash,
        _message(probabilities=(0.25, 0.25, 0.5)).content_hash,
        _message(probabilities=(0.25, 0.5, 0.2500001)).content_hash,
    }
    assert len(hashes) == 6


def test_a_kafka_message_is_keyed_by_its_position_so_replays_find_it() -> None:
    document = raw_document(_message(), NOW)
    assert document["_id"] == "classifications:00003:00000000000000000042"
    assert bytes(document["payload"]) == b"\x00avro"
    assert bytes(document["contentHash"]) == _message().content_hash
    # Positions sort like offsets, which keeps the store's index inserts local.
    assert raw_document(_message(offset=9), NOW)["_id"] < document["_id"]


def test_a_pushed_message_has_no_position_and_is_keyed_by_its_content() -> None:
    pushed = _message(topic=None, partition=None, offset=None, payload=None)
    document = raw_document(pushed, NOW)
    assert document["_id"] == f"push:{pushed.content_hash.hex()}"
    assert (
        raw_document(dataclasses.replace(pushed, kafka_timestamp=None), NOW)["_id"]
        == (document["_id"])
    )

"""What makes two classification messages the same, and how raw messages are kept."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry

from tomstream.metrics import BatchHistogram
from tomstream.services.broker_poll.archive import block_document, pushed_document
from tomstream.services.broker_poll.service import observe_delays
from tomstream.services.broker_poll.storage import ClassificationMessage

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


def test_a_block_holds_offsets_and_exact_payloads_side_by_side() -> None:
    run = [(42, b"\x00avro"), (43, b"second"), (45, b"after a dead letter")]
    block = block_document("classifications", 3, run, NOW)
    assert block["_id"] == "classifications:00003:00000000000000000042"
    assert (block["firstOffset"], block["lastOffset"], block["count"]) == (42, 45, 3)
    assert list(zip(block["offsets"], map(bytes, block["payloads"]), strict=True)) == run
    # Block ids sort like offsets, which keeps the store's index inserts local.
    assert block_document("classifications", 3, [(9, b"")], NOW)["_id"] < block["_id"]


def test_a_pushed_message_has_no_position_and_is_keyed_by_its_content() -> None:
    pushed = _message(topic="REST_push", partition=None, offset=None)
    document = pushed_document(pushed, NOW)
    assert document["_id"] == pushed.content_hash.hex()
    assert (
        pushed_document(dataclasses.replace(pushed, kafka_timestamp=None), NOW)["_id"]
        == (document["_id"])
    )


def test_delay_histograms_count_each_message_in_its_bucket() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("t_delay_seconds", "test", ["broker"], [1, 10], registry=registry)
    histogram.observe_many(("b",), [0.5, 1.0, 3.0, 100.0])
    histogram.observe_many(("b",), [10.0])
    histogram.observe_many(("c",), [])

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"broker": "b", **labels})

    assert [sample("t_delay_seconds_bucket", le=le) for le in ("1.0", "10.0", "+Inf")] == [
        2,
        4,
        5,
    ]
    assert sample("t_delay_seconds_count") == 5
    assert sample("t_delay_seconds_sum") == 114.5
    assert registry.get_sample_value("t_delay_seconds_count", {"broker": "c"}) is None


def test_observed_delays_are_the_three_differences_of_a_message() -> None:
    message = _message(
        elasticc_publish_time=NOW,
        kafka_timestamp=NOW + timedelta(seconds=2),
        classifier=("DelayTestBroker", "v1", "DelayTestClassifier", "p"),
    )
    observe_delays([message], NOW + timedelta(seconds=5))
    labels = {"broker": "DelayTestBroker", "classifier": "DelayTestClassifier"}
    sums = {
        kind: REGISTRY.get_sample_value(
            f"tomstream_classification_{kind}_delay_seconds_sum", labels
        )
        for kind in ("full", "broker", "tom")
    }
    assert sums == {"full": 5.0, "broker": 2.0, "tom": 3.0}

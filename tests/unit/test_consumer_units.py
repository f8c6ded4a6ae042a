"""Pure pieces of the consumer core: subscriptions, lag statistics, migrations on disk."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from tomstream import metrics
from tomstream.consumer import subscription
from tomstream.storage.beside import Beside
from tomstream.storage.migrations import available


def test_one_topic_is_subscribed_by_name() -> None:
    assert subscription(["alerts-wfd"]) == "alerts-wfd"


def test_several_topics_become_one_anchored_pattern() -> None:
    pattern = subscription(["p-alerts-wfd", "p-alerts-ddf-full", "p-alerts-ddf-limited"])
    assert pattern.startswith("^")
    for topic in ["p-alerts-wfd", "p-alerts-ddf-full", "p-alerts-ddf-limited"]:
        assert re.match(pattern, topic)
    for topic in ["p-alerts-wfd.dlq", "alerts-wfd", "p-alerts-ddf-fullx"]:
        assert not re.match(pattern, topic)


def test_pattern_entries_are_kept_as_patterns() -> None:
    pattern = subscription(["^lc_classifier_.*_[0-9]{8}$", "classifications"])
    assert re.match(pattern, "lc_classifier_BHRF_forced_phot_20260101")
    assert re.match(pattern, "classifications")
    assert not re.match(pattern, "lc_classifier_x_2026")


def test_librdkafka_statistics_become_lag_gauges() -> None:
    stats = {
        "topics": {
            "alerts-wfd": {
                "partitions": {
                    "0": {"consumer_lag": 42},
                    "1": {"consumer_lag": -1},  # not assigned: no figure
                    "-1": {"consumer_lag": 7},  # librdkafka's internal partition
                }
            }
        }
    }
    metrics.record_librdkafka_stats("unit", json.dumps(stats))
    assert metrics.CONSUMER_LAG.labels("unit", "alerts-wfd", "0")._value.get() == 42
    samples = {
        s.labels["partition"]
        for s in metrics.CONSUMER_LAG.collect()[0].samples
        if s.labels["service"] == "unit"
    }
    assert samples == {"0"}


def test_migrations_are_numbered_in_order_without_gaps() -> None:
    versions = [m.version for m in available()]
    assert versions == list(range(1, len(versions) + 1))


def test_a_write_beside_runs_during_the_block_and_its_error_surfaces_after() -> None:
    beside = Beside("unit")
    seen: list[str] = []
    started = threading.Event()

    def write(tag: str) -> None:
        started.set()
        seen.append(tag)

    with beside.running(write, "mongo"):
        assert started.wait(5)
        seen.append("postgres")
    assert sorted(seen) == ["mongo", "postgres"]

    def fail() -> None:
        raise ConnectionError("mongo down")

    with pytest.raises(ConnectionError, match="mongo down"), beside.running(fail):
        pass
    beside.close()


def test_when_both_writes_fail_the_callers_error_wins_after_the_other_finished() -> None:
    beside = Beside("unit")
    finished = threading.Event()

    def slow_failure() -> None:
        time.sleep(0.2)
        finished.set()
        raise ConnectionError("mongo down")

    with pytest.raises(ValueError, match="bad row"), beside.running(slow_failure):
        raise ValueError("bad row")
    assert finished.is_set()  # a retry never overlaps a write still in flight
    beside.close()

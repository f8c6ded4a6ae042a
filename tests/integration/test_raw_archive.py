"""The raw broker-message archive on a real FerretDB: every message once, whatever happens."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from conftest import Isolated
from pymongo import MongoClient
from pymongo.database import Database

from tomstream.services.broker_poll.archive import (
    BLOCKS,
    PROGRESS,
    RawArchive,
    count_raw_messages,
    raw_messages,
)
from tomstream.services.broker_poll.storage import ClassificationMessage

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, tzinfo=UTC)
TOPIC = "classifications"


def message(offset: int, *, partition: int = 0) -> ClassificationMessage:
    return ClassificationMessage(
        alert_id=1000 + offset,
        diasource_id=1000 + offset,
        classifier=("FakeBroker", "v1.0", "NugentClassifier", "100%"),
        class_ids=(2222,),
        probabilities=(1.0,),
        elasticc_publish_time=NOW,
        broker_ingest_time=NOW,
        broker_publish_time=None,
        kafka_timestamp=NOW,
        topic=TOPIC,
        partition=partition,
        offset=offset,
        payload=f"payload {partition}:{offset}".encode(),
    )


def messages(offsets: range, *, partition: int = 0) -> list[ClassificationMessage]:
    return [message(o, partition=partition) for o in offsets]


@pytest.fixture
def database(isolated: Callable[[str], Isolated]) -> Iterator[Database]:
    settings = isolated("raw").settings
    with MongoClient(settings.mongodb_uri) as client:
        yield client[settings.mongodb_database]


def kept(database: Database, partition: int = 0) -> list[tuple[int, bytes]]:
    return list(raw_messages(database, TOPIC, partition))


def expected(offsets: range, partition: int = 0) -> list[tuple[int, bytes]]:
    return [(o, f"payload {partition}:{o}".encode()) for o in offsets]


def test_a_replay_with_other_batch_boundaries_adds_nothing(database: Database) -> None:
    archive = RawArchive(database)
    for start in range(0, 1000, 300):
        archive.store(messages(range(start, min(start + 300, 1000))), NOW)
    for start in range(0, 1000, 70):  # a new consumer group, other batches
        archive.store(messages(range(start, min(start + 70, 1000))), NOW)
    assert kept(database) == expected(range(1000))
    assert count_raw_messages(database) == 1000


def test_a_crash_between_block_and_progress_loses_and_doubles_nothing(database: Database) -> None:
    archive = RawArchive(database)
    archive.store(messages(range(0, 100)), NOW)
    archive.store(messages(range(100, 250)), NOW)
    # As if the process died after writing the second block, before advancing the progress.
    database[PROGRESS].update_one({"_id": f"{TOPIC}:00000"}, {"$set": {"storedThrough": 99}})
    # Restarted from the last committed offset, with batches that cut the old block.
    archive.store(messages(range(100, 180)), NOW)
    archive.store(messages(range(180, 400)), NOW)
    assert kept(database) == expected(range(400))
    assert database[BLOCKS].count_documents({}) == 3


def test_partitions_and_pushed_messages_are_kept_apart(database: Database) -> None:
    archive = RawArchive(database)
    pushed = dataclasses.replace(message(0), topic="REST_push", partition=None, offset=None)
    batch = [*messages(range(5), partition=1), *messages(range(3)), pushed]
    archive.store(batch, NOW)
    archive.store(batch, NOW)
    assert kept(database, 0) == expected(range(3))
    assert kept(database, 1) == expected(range(5), partition=1)
    assert count_raw_messages(database) == 9


def test_two_writers_of_one_partition_at_once_keep_each_message_once(database: Database) -> None:
    """A rebalance can leave two consumers on one partition for a moment, batched differently."""
    errors: list[BaseException] = []

    def write(batch_size: int) -> None:
        archive = RawArchive(database)
        try:
            for start in range(0, 600, batch_size):
                archive.store(messages(range(start, min(start + batch_size, 600))), NOW)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(size,)) for size in (50, 37, 120)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert kept(database) == expected(range(600))

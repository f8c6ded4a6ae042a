"""The raw classification messages in MongoDB, exactly once each.

Messages from Kafka are kept in *blocks*: one document per stored run of a partition, holding
the offsets and the exact payload bytes side by side. A document per message cost FerretDB
~25 µs of CPU per message, a third of broker_poll's whole budget; a block costs it ~5.

Exactly once without per-message keys: a block's ``_id`` is the position of its first
message, and a block always starts right after what its partition already holds
(``storedThrough`` in the progress collection). So whoever stores the same messages again (a
retry, a restart after a crash, a replay in a new consumer group, a second consumer during a
rebalance) either skips them by the progress or computes the same first position, finds that
block already there, and continues after its last offset. The progress is only a shortcut:
the blocks alone decide, which is why a crash between writing a block and advancing the
progress loses nothing and doubles nothing.

Pushed messages (the REST path) have no position: one document each, keyed by their content.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from tomstream.storage.mongo import insert_new

if TYPE_CHECKING:
    from tomstream.services.broker_poll.storage import ClassificationMessage

BLOCKS = "broker_message_blocks"
PROGRESS = "broker_message_blocks_progress"
PUSHED = "pushed_broker_messages"


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition:05d}"


def block_id(topic: str, partition: int, first_offset: int) -> str:
    """Sorts like the offsets, which keeps FerretDB's index inserts local."""
    return f"{partition_key(topic, partition)}:{first_offset:020d}"


class RawArchive:
    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._blocks = database[BLOCKS]
        self._progress = database[PROGRESS]
        self._pushed = database[PUSHED]

    def store(self, messages: Sequence[ClassificationMessage], ingested_at: datetime) -> None:
        """Keep every message not kept yet; idempotent, and safe to run concurrently."""
        runs: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        pushed: list[dict[str, Any]] = []
        for m in messages:
            if m.topic is None or m.partition is None or m.offset is None:
                pushed.append(pushed_document(m, ingested_at))
            else:
                runs.setdefault((m.topic, m.partition), []).append((m.offset, m.payload or b""))
        for (topic, partition), run in runs.items():
            run.sort()  # already in order as consumed: a linear check
            self._store_run(topic, partition, run, ingested_at)
        insert_new(self._pushed, pushed)

    def _store_run(
        self, topic: str, partition: int, run: list[tuple[int, bytes]], ingested_at: datetime
    ) -> None:
        key = partition_key(topic, partition)
        progress = self._progress.find_one({"_id": key}, {"storedThrough": 1})
        stored_through = -1 if progress is None else int(progress["storedThrough"])
        pending = [item for item in run if item[0] > stored_through]
        while pending:
            block = block_document(topic, partition, pending, ingested_at)
            try:
                self._blocks.insert_one(block)
            except DuplicateKeyError:
                # A block from this very position is there: it holds up to its last offset.
                existing = self._blocks.find_one({"_id": block["_id"]}, {"lastOffset": 1})
                assert existing is not None  # blocks are never deleted
                stored_through = int(existing["lastOffset"])
                pending = [item for item in pending if item[0] > stored_through]
            else:
                stored_through = block["lastOffset"]
                pending = []
        self._advance_progress(key, stored_through)

    def _advance_progress(self, key: str, stored_through: int) -> None:
        update = {"$max": {"storedThrough": stored_through}}
        try:
            self._progress.update_one({"_id": key}, update, upsert=True)
        except DuplicateKeyError:
            # Two first upserts of one partition raced and the other inserted the document:
            # it exists now, so the update finds it.
            self._progress.update_one({"_id": key}, update)


def block_document(
    topic: str, partition: int, run: Sequence[tuple[int, bytes]], ingested_at: datetime
) -> dict[str, Any]:
    """Messages of one partition in offset order: ``payloads[i]`` was at ``offsets[i]``.

    Offsets may skip (a dead-lettered message, a transaction marker); a block is never empty.
    """
    offsets = [offset for offset, _ in run]
    return {
        "_id": block_id(topic, partition, offsets[0]),
        "topic": topic,
        "partition": partition,
        "firstOffset": offsets[0],
        "lastOffset": offsets[-1],
        "count": len(offsets),
        "ingestedAt": ingested_at,
        "offsets": offsets,
        "payloads": [payload for _, payload in run],  # bytes are BSON binary
    }


def pushed_document(m: ClassificationMessage, ingested_at: datetime) -> dict[str, Any]:
    """A pushed message, keyed by its content: pushing it again adds nothing."""
    return {
        "_id": m.content_hash.hex(),
        "alertId": m.alert_id,
        "diaSourceId": m.diasource_id,
        "brokerName": m.classifier[0],
        "classifierName": m.classifier[2],
        "topic": m.topic,
        "ingestedAt": ingested_at,
        "payload": m.payload,
    }


def count_raw_messages(database: Database[dict[str, Any]]) -> int:
    """Messages kept: those in every block, and the pushed ones."""
    totals = list(database[BLOCKS].aggregate([{"$group": {"_id": None, "n": {"$sum": "$count"}}}]))
    in_blocks = int(totals[0]["n"]) if totals else 0
    return in_blocks + database[PUSHED].count_documents({})


def raw_messages(
    database: Database[dict[str, Any]], topic: str, partition: int
) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of every kept message of a partition, in offset order."""
    blocks = database[BLOCKS].find({"topic": topic, "partition": partition}).sort("_id", 1)
    for block in blocks:
        yield from zip(block["offsets"], (bytes(p) for p in block["payloads"]), strict=True)

"""The fast classification reader gives exactly what fastavro gives, and fails as strictly."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from tomstream import avro
from tomstream.classification_reader import (
    Classification,
    read_classification,
    read_schemaless_classification,
)

# ELAsTiCC2 ids (two-byte varints), small ids (one byte), large and negative ones (longer).
CLASS_IDS = [2222, 2242, 2332, 111, 64, 8191, 0, 1, 10, 63, -1, -65, 8192, 70000, 2**31 - 1]


def as_classification(record: dict[str, Any]) -> Classification:
    """fastavro's answer, in the reader's shape."""
    pairs = record["classifications"]
    return Classification(
        record["alertId"], record["diaSourceId"], record["elasticcPublishTimestamp"],
        record["brokerIngestTimestamp"], record["brokerName"], record["brokerVersion"],
        record["classifierName"], record["classifierParams"],
        tuple(p["classId"] for p in pairs), tuple(p["probability"] for p in pairs),
    )  # fmt: skip


def random_record(rng: random.Random) -> dict[str, Any]:
    def float32() -> float:
        return struct.unpack("<f", struct.pack("<f", rng.uniform(-1, 2)))[0]

    ids = CLASS_IDS if rng.random() < 0.3 else CLASS_IDS[:3]
    return {
        # Not 0: a message starting with byte 0 is taken as Confluent-framed (see avro.py).
        "alertId": rng.choice([1, -5, rng.randrange(1, 2**62), -(2**63), 2**63 - 1]),
        "diaSourceId": rng.randrange(-(2**40), 2**40),
        "elasticcPublishTimestamp": rng.randrange(-(10**12), 4 * 10**12),
        "brokerIngestTimestamp": rng.choice([None, rng.randrange(10**13)]),
        "brokerName": rng.choice(["FakeBroker", "", "Fink ✨", "x" * 300]),
        "brokerVersion": "v1.0",
        "classifierName": rng.choice(["RandomSNType", "NugentClassifier"]),
        "classifierParams": rng.choice(["Perfect", "100%", ""]),
        "classifications": [
            {"classId": rng.choice(ids), "probability": float32()}
            for _ in range(rng.choice([0, 1, 20, 21, 200]))
        ],
    }


def test_random_records_read_as_fastavro_reads_them() -> None:
    rng = random.Random(20261121)
    for _ in range(500):
        payload = avro.encode(avro.BROKER_CLASSIFICATION, random_record(rng))
        expected = as_classification(avro.decode_broker_message(payload))
        assert read_classification(payload) == expected
        assert read_classification(avro.frame_confluent(7, payload)) == expected


def test_timestamps_are_utc_datetimes() -> None:
    record = random_record(random.Random(1)) | {
        "elasticcPublishTimestamp": 1_700_017_445_678,
        "brokerIngestTimestamp": None,
    }
    read = read_classification(avro.encode(avro.BROKER_CLASSIFICATION, record))
    assert read.elasticc_publish_time == datetime(2023, 11, 15, 3, 4, 5, 678000, tzinfo=UTC)
    assert read.broker_ingest_time is None


def _varint(value: int) -> bytes:
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while raw > 0x7F:
        out.append(raw & 0x7F | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def test_arrays_written_in_several_blocks_and_with_sizes() -> None:
    """Other writers may split the array; a negative count gives the block's size too."""
    record = random_record(random.Random(2)) | {"classifications": []}
    head = avro.encode(avro.BROKER_CLASSIFICATION, record)[:-1]  # without the empty array
    pairs = [(2222, 0.5), (5, 0.25), (2242, 0.125)]
    encoded = [_varint(c) + struct.pack("<f", p) for c, p in pairs]
    blocks = (
        _varint(1) + encoded[0]
        + _varint(-2) + _varint(len(encoded[1]) + len(encoded[2])) + encoded[1] + encoded[2]
        + _varint(0)
    )  # fmt: skip
    read = read_classification(head + blocks)
    assert read.class_ids == (2222, 5, 2242)
    assert read.probabilities == (0.5, 0.25, 0.125)
    assert read == as_classification(avro.decode_broker_message(head + blocks))


def test_a_non_minimal_two_byte_varint_still_reads() -> None:
    record = random_record(random.Random(3)) | {"classifications": []}
    head = avro.encode(avro.BROKER_CLASSIFICATION, record)[:-1]
    padded_zero = b"\x80\x00"  # 0, written in two bytes
    payload = head + _varint(1) + padded_zero + struct.pack("<f", 1.0) + _varint(0)
    assert read_classification(payload).class_ids == (0,)


@pytest.mark.parametrize("size", range(0, 60, 3))
def test_truncated_messages_are_decode_errors(size: int) -> None:
    payload = avro.encode(avro.BROKER_CLASSIFICATION, random_record(random.Random(4)))
    with pytest.raises(avro.DecodeError):
        read_classification(payload[:size])


def test_trailing_bytes_and_bad_union_branches_are_decode_errors() -> None:
    record = random_record(random.Random(5)) | {"brokerIngestTimestamp": None}
    payload = avro.encode(avro.BROKER_CLASSIFICATION, record)
    with pytest.raises(avro.DecodeError, match="trailing"):
        read_classification(payload + b"\x00")
    branch_at = len(_varint(record["alertId"]) + _varint(record["diaSourceId"]))
    branch_at += len(_varint(record["elasticcPublishTimestamp"]))
    bad = payload[:branch_at] + _varint(2) + payload[branch_at + 1 :]
    with pytest.raises(avro.DecodeError, match="union branch"):
        read_classification(bad)


def test_garbage_is_a_decode_error_or_what_fastavro_reads() -> None:
    rng = random.Random(6)
    valid = [avro.encode(avro.BROKER_CLASSIFICATION, random_record(rng)) for _ in range(20)]
    for _ in range(3000):
        corrupted = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 4)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        try:
            read = read_classification(bytes(corrupted))
        except avro.DecodeError:
            continue
        expected = as_classification(avro.decode_broker_message(bytes(corrupted)))
        # NaN is not equal to itself: compare the probabilities' bits.
        assert read._replace(probabilities=()) == expected._replace(probabilities=())
        assert _bits(read.probabilities) == _bits(expected.probabilities)


def _bits(values: tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_alert_id_zero_reads_when_no_framing_is_looked_for() -> None:
    record = random_record(random.Random(7)) | {"alertId": 0}
    payload = avro.encode(avro.BROKER_CLASSIFICATION, record)
    assert read_schemaless_classification(payload).alert_id == 0
    with pytest.raises(avro.DecodeError):  # with framing detection, byte 0 means a frame
        read_classification(payload)

"""A fast reader for the one record broker_poll reads by the thousand: brokerClassification.

fastavro builds a dict for every (classId, probability) pair and spends ~15 µs on a typical
20-pair message, the largest single cost of storing it. This reader knows the v0_9_1 layout
and reads the pairs of a block with one ``struct`` call when, as for every ELAsTiCC class id
from 64 to 8191, each classId is a two-byte varint (other ids take the general path). It is
held to fastavro's results by tests (tests/unit/test_classification_reader.py) and, like
:func:`tomstream.avro.decode`, it is strict and total: anything but exactly one valid record
raises :class:`~tomstream.avro.DecodeError`.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

from tomstream.avro import CONFLUENT_MAGIC, DecodeError, Payload, unframe_confluent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_VARINT_BYTES = 10  # a 64-bit long
_FLOAT = struct.Struct("<f")
_PAIR_SIZE = 6  # a two-byte classId varint and a 4-byte float


class Classification(NamedTuple):
    """One brokerClassification record (elasticc.v0_9_1), its pairs as two tuples."""

    alert_id: int
    diasource_id: int
    elasticc_publish_time: datetime
    broker_ingest_time: datetime | None
    broker_name: str
    broker_version: str
    classifier_name: str
    classifier_params: str
    class_ids: tuple[int, ...]
    probabilities: tuple[float, ...]


def read_classification(payload: Payload | None) -> Classification:
    """Read a schemaless or Confluent-framed classification (see ``decode_broker_message``)."""
    if not payload:
        raise DecodeError("empty message, expected a broker classification")
    if payload[0] == CONFLUENT_MAGIC:
        return read_schemaless_classification(unframe_confluent(payload)[1])
    return read_schemaless_classification(bytes(payload))


def read_schemaless_classification(body: bytes) -> Classification:
    """Read a schemaless classification; no framing is looked for (alertId 0 starts with 0)."""
    try:
        return _Reader(body).record()
    except DecodeError:
        raise
    except (IndexError, ValueError, OverflowError, struct.error) as exc:
        # IndexError: truncated; UnicodeDecodeError is a ValueError; OverflowError: a date.
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DecodeError(
            f"not a valid brokerClassification record ({len(body)} bytes): {detail}"
        ) from exc


class _Reader:
    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def record(self) -> Classification:
        alert_id = self.long()
        diasource_id = self.long()
        published = _EPOCH + timedelta(milliseconds=self.long())
        branch = self.long()
        if branch not in (0, 1):
            raise DecodeError(f"union branch {branch} of brokerIngestTimestamp does not exist")
        ingested = _EPOCH + timedelta(milliseconds=self.long()) if branch else None
        names = (self.string(), self.string(), self.string(), self.string())
        class_ids, probabilities = self.pairs()
        if self.pos != len(self.body):
            raise DecodeError(
                f"{len(self.body) - self.pos} trailing byte(s) after a {self.pos}-byte "
                "brokerClassification record"
            )
        return Classification(
            alert_id, diasource_id, published, ingested, *names, class_ids, probabilities
        )

    def long(self) -> int:
        """A zigzag varint."""
        body, pos = self.body, self.pos
        byte = body[pos]
        value = byte & 0x7F
        shift = 7
        pos += 1
        while byte & 0x80:
            if shift >= 7 * _MAX_VARINT_BYTES:
                raise DecodeError("a varint longer than 10 bytes")
            byte = body[pos]
            value |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
        if value >> 64:
            raise DecodeError("a varint beyond 64 bits")
        self.pos = pos
        return (value >> 1) ^ -(value & 1)

    def string(self) -> str:
        size = self.long()
        end = self.pos + size
        if size < 0 or end > len(self.body):
            raise DecodeError(f"a string of {size} bytes does not fit in the message")
        text = self.body[self.pos : end].decode()
        self.pos = end
        return text

    def pairs(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """The classifications array: blocks of (classId int, probability float)."""
        class_ids: list[int] = []
        probabilities: list[float] = []
        while count := self.long():
            if count < 0:  # a block that also gives its size in bytes
                count = -count
                self.long()
            if not self.two_byte_pairs(count, class_ids, probabilities):
                for _ in range(count):
                    class_ids.append(self.long())
                    probabilities.append(_FLOAT.unpack_from(self.body, self.pos)[0])
                    self.pos += 4
        return tuple(class_ids), tuple(probabilities)

    def two_byte_pairs(self, count: int, class_ids: list[int], probabilities: list[float]) -> bool:
        """Read ``count`` pairs at once if every classId is a two-byte varint."""
        end = self.pos + count * _PAIR_SIZE
        if end > len(self.body):
            return False
        values = _pairs_struct(count).unpack_from(self.body, self.pos)
        ids = [_TWO_BYTE_VARINTS[raw] for raw in values[0::2]]
        if None in ids:
            return False
        class_ids.extend(ids)  # type: ignore[arg-type]  # no None, checked above
        probabilities.extend(values[1::2])
        self.pos = end
        return True


@cache
def _pairs_struct(count: int) -> struct.Struct:
    return struct.Struct("<" + "Hf" * count)


def _two_byte_varints() -> list[int | None]:
    """Little-endian uint16 of two bytes -> their zigzag value, if they are a whole varint."""
    table: list[int | None] = [None] * 65536
    for low in range(0x80, 0x100):  # continuation bit set
        for high in range(0x01, 0x80):  # last byte, not a redundant zero
            raw = (low & 0x7F) | (high << 7)
            table[low | (high << 8)] = (raw >> 1) ^ -(raw & 1)
    return table


_TWO_BYTE_VARINTS = _two_byte_varints()

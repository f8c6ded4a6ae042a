"""The Avro codec shared by every service.

- :func:`load_schema` loads one of the project's schemas (``tomstream/schemas/avro``) by its
  full name, resolving the named types it references from sibling files.
- :func:`encode` / :func:`decode` write and read one schemaless record (no header, no schema).
- :func:`frame_confluent` / :func:`unframe_confluent` add and strip the Confluent wire-format
  header (magic byte ``0`` + 4-byte big-endian schema id) that Rubin uses on Kafka.
- :func:`decode_alert` reads an alert message of either kind: a plain schemaless ELAsTiCC alert or
  a Confluent-framed Rubin alert. :func:`decode_broker_message` reads a broker classification.

Decoding is strict and total: any message that is not exactly one valid record raises
:class:`DecodeError` and nothing else, so a consumer can route it to a dead-letter topic.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import fastavro
import fastavro.schema
from fastavro.types import Schema

from tomstream.schemas import SCHEMA_DIR

__all__ = [
    "BROKER_CLASSIFICATION",
    "BROKER_CLASSIFICATION_V09",
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "ELASTICC_ALERT",
    "ELASTICC_V09_ALERT",
    "LSST_V10_ALERT",
    "LSST_V11_ALERT",
    "RUBIN_SCHEMA_IDS",
    "AlertDecoder",
    "DecodeError",
    "DecodedAlert",
    "SchemaNotFoundError",
    "available_schemas",
    "decode",
    "decode_alert",
    "decode_broker_message",
    "encode",
    "frame_confluent",
    "load_schema",
    "schema_id_for",
    "schema_path",
    "unframe_confluent",
]

Payload: TypeAlias = bytes | bytearray | memoryview
"""Anything a Kafka client may hand us as a message value."""

ELASTICC_ALERT: Final = "elasticc.v0_9_1.alert"
"""ELAsTiCC2 alert (what the TOM streams to brokers)."""
ELASTICC_V09_ALERT: Final = "elasticc.v0_9.alert"
"""ELAsTiCC (first campaign) alert; only needed to read old samples."""
BROKER_CLASSIFICATION: Final = "elasticc.v0_9_1.brokerClassification"
"""ELAsTiCC2 broker message. The Avro record inside is spelled ``brokerClassfication``."""
BROKER_CLASSIFICATION_V09: Final = "elasticc.v0_9.brokerClassification"
"""ELAsTiCC (first campaign) broker message."""
ALERT_FLUX_ZERO_POINT: Final = 31.4
"""Alert fluxes are nJy: m = -2.5 log10(flux) + 31.4 (the DESC TOM said 27.5, which was wrong)."""
LSST_V10_ALERT: Final = "lsst.v10_0.alert"
"""Rubin alert packet schema 10.0."""
LSST_V11_ALERT: Final = "lsst.v11_0.alert"
"""Rubin alert packet schema 11.0."""

CONFLUENT_MAGIC: Final = 0
CONFLUENT_HEADER_SIZE: Final = 5
_MAX_SCHEMA_ID: Final = 0xFFFF_FFFF

# A full Avro name: dotted identifiers. Checked before the name is used in a file glob.
_FULL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class DecodeError(ValueError):
    """The bytes are not one valid record of the expected schema (bad input, not a bug)."""


class SchemaNotFoundError(LookupError):
    """No schema file with that name ships with the project."""


# ------------------------------------------------------------------------------------- schemas


@cache
def _schema_files() -> Mapping[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(SCHEMA_DIR.rglob("*.avsc")):
        # Named types are resolved by file name, so a name defined twice would be ambiguous.
        if path.stem in files:
            raise RuntimeError(f"schema {path.stem} is defined twice: {files[path.stem]}, {path}")
        files[path.stem] = path
    return MappingProxyType(files)


def available_schemas() -> list[str]:
    """The full names of all schemas shipped with the project, sorted."""
    return sorted(_schema_files())


def schema_path(schema_name: str) -> Path:
    """The ``.avsc`` file that defines ``schema_name`` (e.g. ``"elasticc.v0_9_1.alert"``)."""
    if not _FULL_NAME.fullmatch(schema_name):
        raise SchemaNotFoundError(f"not a valid Avro full name: {schema_name!r}")
    try:
        return _schema_files()[schema_name]
    except KeyError:
        raise SchemaNotFoundError(
            f"no schema {schema_name!r} under {SCHEMA_DIR} (have: {', '.join(available_schemas())})"
        ) from None


@cache
def load_schema(schema_name: str) -> Schema:
    """The parsed schema ``schema_name``, with its named types loaded from sibling files.

    Cached: every caller shares the same object, so do not modify it.
    """
    # fastavro's default repository looks up each referenced type as <full name>.avsc in the
    # directory of the file it loads; our layout keeps every schema next to the types it uses.
    return fastavro.schema.load_schema(str(schema_path(schema_name)))


# ------------------------------------------------------------------------------- encode/decode


def encode(schema_name: str, record: Mapping[str, Any], *, strict: bool = False) -> bytes:
    """Encode one record as schemaless Avro (the body only, no header).

    With ``strict=True`` a record with fields the schema does not have, or missing a field that
    has no default, is refused; otherwise fastavro drops unknown keys and writes ``null`` for
    missing nullable fields. Errors in the record raise fastavro's ``ValueError``/``TypeError``:
    a bad record is a bug in the producer, not bad input.
    """
    schema = load_schema(schema_name)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record, strict_allow_default=strict)
    return buf.getvalue()


def decode(schema_name: str, payload: Payload) -> dict[str, Any]:
    """Decode exactly one schemaless ``schema_name`` record; anything else is a DecodeError.

    Bytes left over after the record are an error too: they mean the writer used another schema
    (or framing) and the fields read so far are probably garbage.
    """
    # Outside the try: an unknown schema name is a programming error and must not be turned
    # into a DecodeError (which would send every message to the dead-letter topic).
    schema = load_schema(schema_name)
    if not payload:
        raise DecodeError(f"empty payload, expected a {schema_name} record")
    buf = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except Exception as exc:
        # This is the trust boundary for bytes from Kafka. On garbage, fastavro raises EOFError,
        # IndexError (union branch out of range), OverflowError (dates, huge ints),
        # UnicodeDecodeError, struct.error, ValueError, ... depending on version and on whether
        # the C or pure-Python reader runs; callers need one exception type for "bad message".
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DecodeError(
            f"not a valid {schema_name} record ({len(payload)} bytes): {detail}"
        ) from exc
    consumed = buf.tell()
    if consumed != len(payload):
        raise DecodeError(
            f"{len(payload) - consumed} trailing byte(s) after a {consumed}-byte "
            f"{schema_name} record"
        )
    if not isinstance(record, dict):  # all our top-level schemas are records
        raise DecodeError(f"{schema_name} did not decode to a record")
    return record


# ----------------------------------------------------------------------- Confluent wire format


def schema_id_for(major: int, minor: int) -> int:
    """Rubin's Confluent schema id for alert schema version ``major.minor``: major*100 + minor."""
    if major < 0 or not 0 <= minor < 100:
        raise ValueError(f"no schema id for version {major}.{minor}: need major >= 0, minor < 100")
    return major * 100 + minor


def frame_confluent(schema_id: int, body: bytes) -> bytes:
    """Prefix ``body`` with the Confluent header: magic byte 0 + 4-byte big-endian schema id."""
    if not 0 <= schema_id <= _MAX_SCHEMA_ID:
        raise ValueError(f"Confluent schema id must fit in 4 unsigned bytes, got {schema_id}")
    return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big") + body


def unframe_confluent(payload: Payload) -> tuple[int, bytes]:
    """Split a Confluent-framed message into ``(schema_id, body)``; DecodeError if not framed."""
    if len(payload) < CONFLUENT_HEADER_SIZE or payload[0] != CONFLUENT_MAGIC:
        raise DecodeError(
            f"not a Confluent-framed message: need magic byte 0 and a 5-byte header, "
            f"got {len(payload)} bytes starting {bytes(payload[:CONFLUENT_HEADER_SIZE]).hex()!r}"
        )
    schema_id = int.from_bytes(payload[1:CONFLUENT_HEADER_SIZE], "big")
    return schema_id, bytes(payload[CONFLUENT_HEADER_SIZE:])


RUBIN_SCHEMA_IDS: Mapping[int, str] = MappingProxyType(
    {
        schema_id_for(10, 0): LSST_V10_ALERT,
        schema_id_for(11, 0): LSST_V11_ALERT,
    }
)
"""Confluent schema id -> alert schema name for Rubin alerts. To support a new Rubin version, add
its files under ``tomstream/schemas/avro/lsst/vNN_M/`` and an entry here (or pass a mapping to
:class:`AlertDecoder`)."""


# ------------------------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class DecodedAlert:
    """One decoded alert message and how it was encoded."""

    schema_name: str
    record: dict[str, Any]
    framed: bool
    """True for a Confluent-framed message (Rubin), False for plain schemaless (ELAsTiCC)."""
    schema_id: int | None = None
    """The Confluent schema id of a framed message."""


class AlertDecoder:
    """Decodes alert messages of either kind, choosing the schema per message.

    A message whose first byte is 0 is taken as Confluent-framed and its 4-byte schema id must be
    in ``confluent_schemas`` (default :data:`RUBIN_SCHEMA_IDS`). Any other message is decoded as
    plain schemaless ``unframed_schema`` (default ELAsTiCC2).

    Why the first byte is enough: a schemaless ELAsTiCC alert starts with ``alertId``, an Avro
    long written as a zigzag varint. The first byte of a varint is 0 only when the whole varint
    is the single byte 0, i.e. ``alertId == 0``. ELAsTiCC alert ids are diaSource ids, which are
    positive, so a leading 0 always means Confluent framing; a (non-existent) alert with id 0
    would be reported as a framed message with an unknown schema id.
    """

    def __init__(
        self,
        confluent_schemas: Mapping[int, str] | None = None,
        *,
        unframed_schema: str = ELASTICC_ALERT,
    ) -> None:
        self._confluent = dict(RUBIN_SCHEMA_IDS if confluent_schemas is None else confluent_schemas)
        self._unframed = unframed_schema
        # Load every schema now, so that a missing file fails at start-up, not per message.
        for name in (*self._confluent.values(), unframed_schema):
            load_schema(name)

    @property
    def confluent_schemas(self) -> Mapping[int, str]:
        """The schema ids this decoder accepts on framed messages."""
        return MappingProxyType(self._confluent)

    def decode(self, payload: Payload | None) -> DecodedAlert:
        """Decode one message; DecodeError if it is not exactly one valid alert."""
        if not payload:  # None is a Kafka tombstone
            raise DecodeError("empty message, expected an alert")
        if payload[0] == CONFLUENT_MAGIC:
            schema_id, body = unframe_confluent(payload)
            schema_name = self._confluent.get(schema_id)
            if schema_name is None:
                known = ", ".join(str(i) for i in sorted(self._confluent)) or "none"
                raise DecodeError(
                    f"Confluent-framed alert with unknown schema id {schema_id} (known: {known})"
                )
            return DecodedAlert(schema_name, decode(schema_name, body), True, schema_id)
        return DecodedAlert(self._unframed, decode(self._unframed, payload), False)


@cache
def _default_alert_decoder() -> AlertDecoder:
    return AlertDecoder()


def decode_alert(payload: Payload | None) -> DecodedAlert:
    """Decode an ELAsTiCC2 (schemaless) or Rubin (Confluent-framed) alert; see AlertDecoder."""
    return _default_alert_decoder().decode(payload)


def decode_broker_message(payload: Payload | None) -> dict[str, Any]:
    """Decode an ELAsTiCC2 broker classification message, schemaless or Confluent-framed.

    A framed message may carry any schema id: each broker registered the schema in its own
    registry, so the id says nothing we could use, and the body is always decoded with the
    v0_9_1 ``brokerClassification`` schema (the strict decode catches a different writer schema
    in nearly all cases). As for alerts, a leading 0 byte means framing, because a schemaless
    message starts with ``alertId`` and its zigzag varint begins with 0 only for ``alertId == 0``.

    The timestamps (``timestamp-millis``) come back as timezone-aware UTC ``datetime``s.
    broker_poll reads with :mod:`tomstream.classification_reader` (faster, same results); this
    general decode is the reference its tests compare with.
    """
    if not payload:
        raise DecodeError("empty message, expected a broker classification")
    body = unframe_confluent(payload)[1] if payload[0] == CONFLUENT_MAGIC else payload
    return decode(BROKER_CLASSIFICATION, body)

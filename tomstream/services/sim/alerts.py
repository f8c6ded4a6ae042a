"""The ELAsTiCC2 rules of the simulated survey, and the alert builder (pure functions).

The rules are those of the DESC TOM (LSSTDESC/tom_desc), which ran ELAsTiCC2:

- ``elasticc2/management/commands/load_snana_fits.py`` (the SNANA loader): the diaObject id is
  the SNID; an object's epochs are PHOT rows ``PTROBS_MIN … PTROBS_MAX`` and each is a forced
  source with id ``SNID * 100000 + index within that range``; an epoch with ``PHOTFLAG & 4096``
  is also a diaSource (same id) and one alert (``alertId = diaSourceId``); FLUXCAL and
  FLUXCALERR are scaled from zero point 27.5 to 31.4 (nJy); ``snr = flux / error``; an object
  with more than 1000 epochs is DDF.
- ``elasticc2/models.py`` ``BaseAlert.reconstruct`` (the alert): ``prvDiaSources`` are the
  object's sources with ``t - days ≤ mjd < t``; ``prvDiaForcedSources`` only when the alert is
  more than 0.5 day after the object's first source, and then the forced sources with
  ``mjd ≥ t - days``, ``mjd ≥ first - 30`` and ``mjd < t``, in time order.
- ``elasticc2/management/commands/send_elasticc2_alerts.py`` (the sender): unsent alerts with
  ``mjd ≤ through``, in time order; WFD objects go to ``alerts-wfd`` with 365 days of history,
  DDF objects to ``alerts-ddf-full`` (365 days) and ``alerts-ddf-limited`` (30 days);
  ``--added-days N`` sends through ``floor(last sent + 0.5) + N + 0.5``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from tomstream import avro

SNANA_ZEROPOINT: Final = 27.5
NJY_PER_FLUXCAL: Final = 10 ** ((avro.ALERT_FLUX_ZERO_POINT - SNANA_ZEROPOINT) / 2.5)
"""SNANA FLUXCAL (zero point 27.5) → alert flux (zero point 31.4, i.e. nJy)."""
PHOTFLAG_DETECT: Final = 4096
"""The PHOTFLAG bit of a detection: the epoch is a diaSource and makes an alert."""
MAX_EPOCHS_PER_OBJECT: Final = 100_000
"""Forced-source ids are ``diaObjectId * MAX_EPOCHS_PER_OBJECT + epoch index``."""
DDF_EPOCH_LIMIT: Final = 1000
"""An object with more epochs than this is in a deep-drilling field."""
SIM_VERSION: Final = "2023-04-01"
"""The diaObject ``simVersion`` of loaded SNANA sets (the DESC TOM loader's default)."""

FULL_HISTORY_DAYS: Final = 365.0
LIMITED_HISTORY_DAYS: Final = 30.0
FORCED_AFTER_FIRST_DETECTION_DAYS: Final = 0.5
"""An alert carries forced photometry only if it is more than this after the first source."""
FORCED_BEFORE_FIRST_DETECTION_DAYS: Final = 30.0
"""…and then no forced photometry from earlier than this before the first source."""
DAY_BOUNDARY: Final = 0.5
"""Simulated days end at MJD x.5 (12:00 UTC, 8:00 at Cerro Pachón: after a night's visits)."""

TOPIC_WFD: Final = "alerts-wfd"
TOPIC_DDF_FULL: Final = "alerts-ddf-full"
TOPIC_DDF_LIMITED: Final = "alerts-ddf-limited"
ALERT_TOPICS: Final = (TOPIC_WFD, TOPIC_DDF_FULL, TOPIC_DDF_LIMITED)


def fluxcal_to_njy(fluxcal: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """SNANA FLUXCAL (or FLUXCALERR) in nJy, the unit of the alerts' psFlux."""
    return np.asarray(fluxcal, dtype=np.float64) * NJY_PER_FLUXCAL


def forced_source_ids(
    object_ids: npt.ArrayLike, epoch_index: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """The ids of forced sources (and of the diaSources and alerts of detected epochs)."""
    index = np.asarray(epoch_index, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= MAX_EPOCHS_PER_OBJECT):
        raise ValueError(f"an object has more than {MAX_EPOCHS_PER_OBJECT} epochs")
    return np.asarray(object_ids, dtype=np.int64) * MAX_EPOCHS_PER_OBJECT + index


def is_ddf(n_epochs: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether an object with this many epochs is a deep-drilling-field object."""
    return np.asarray(n_epochs) > DDF_EPOCH_LIMIT


def detected(photflag: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which epochs are detections (diaSources, alerts)."""
    return (np.asarray(photflag, dtype=np.int64) & PHOTFLAG_DETECT) != 0


def through_mjd_after(last_sent_mjd: float, added_days: float) -> float:
    """``--added-days``: the end of the day of the last sent alert, plus ``added_days`` days."""
    return math.floor(last_sent_mjd + DAY_BOUNDARY) + added_days + DAY_BOUNDARY


@dataclass(frozen=True, slots=True)
class Route:
    """One topic an alert goes to, and how many days of history it carries there."""

    topic: str
    history_days: float


WFD_ROUTES: Final = (Route(TOPIC_WFD, FULL_HISTORY_DAYS),)
DDF_ROUTES: Final = (
    Route(TOPIC_DDF_FULL, FULL_HISTORY_DAYS),
    Route(TOPIC_DDF_LIMITED, LIMITED_HISTORY_DAYS),
)


def routes(isddf: bool) -> tuple[Route, ...]:
    """Where an object's alerts go: WFD to one topic, DDF to a full and a limited one."""
    return DDF_ROUTES if isddf else WFD_ROUTES


# --------------------------------------------------------------------------- the alert bytes
#
# An alert repeats its object's rows: each diaSource and forced source is in many alerts. So
# rather than writing every alert record with fastavro (which validates and writes each nested
# record again, ~4 µs each, a few hundred µs per alert), a batch's rows are Avro-encoded once,
# all together with numpy (EncodedRows), and each alert is put together from byte ranges: an
# object's rows are in time order, so an alert's history is one contiguous range. The bytes
# are exactly what fastavro writes for the same record (tested).

AvroKind = Literal["long", "double", "float", "string"]
DIA_SOURCE: Final = "elasticc.v0_9_1.diaSource"
DIA_FORCED_SOURCE: Final = "elasticc.v0_9_1.diaForcedSource"
DIA_OBJECT: Final = "elasticc.v0_9_1.diaObject"


@dataclass(frozen=True)
class AvroField:
    name: str
    kind: AvroKind
    nullable: bool
    """A ``["null", kind]`` union; NaN in a float column is written as null."""


@cache
def record_layout(schema_name: str) -> tuple[AvroField, ...]:
    """The fields of a flat record schema of the project, e.g. ``elasticc.v0_9_1.diaSource``."""
    fields = []
    for field in avro.load_schema(schema_name)["fields"]:
        kind, nullable = field["type"], isinstance(field["type"], list)
        if nullable:
            if kind[0] != "null" or len(kind) != 2:
                raise ValueError(f"{schema_name}.{field['name']}: unsupported union {kind}")
            kind = kind[1]
        if kind not in ("long", "double", "float", "string"):
            raise ValueError(f"{schema_name}.{field['name']}: unsupported type {kind}")
        fields.append(AvroField(field["name"], kind, nullable))
    return tuple(fields)


@dataclass(frozen=True)
class EncodedRows:
    """Avro-encoded records, one after the other; row ``i`` is ``blob[offsets[i]:offsets[i+1]]``."""

    blob: bytes
    offsets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def span(self, start: int, stop: int) -> bytes:
        """Rows ``start … stop-1``, concatenated."""
        return self.blob[self.offsets[start] : self.offsets[stop]]


def encode_records(schema_name: str, columns: Mapping[str, npt.ArrayLike]) -> EncodedRows:
    """Every row of ``columns`` (one array per field) as a schemaless ``schema_name`` record.

    Each field of each row becomes up to a few pieces of bytes (a union index, a varint, a
    fixed-width value, string bytes); all pieces are scattered into one buffer with numpy.
    """
    layout = record_layout(schema_name)
    pieces: list[_Piece] = []
    for field in layout:
        values = np.asarray(columns[field.name])
        present = None
        if field.nullable:
            present = np.ones(len(values), dtype=np.bool_)
            if field.kind in ("double", "float"):
                present = ~np.isnan(values)
            index = np.where(present, _BRANCH_VALUE[0], _BRANCH_NULL[0]).astype(np.uint8)
            pieces.append(_Piece(np.ones(len(values), dtype=np.int64), index[:, None]))
        pieces.extend(_field_pieces(field.kind, values, present))
    n = len(pieces[0].widths) if pieces else 0
    row_widths = np.zeros(n, dtype=np.int64)
    for piece in pieces:
        row_widths += piece.widths
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_widths, out=offsets[1:])
    buffer = np.empty(int(offsets[-1]), dtype=np.uint8)
    position = offsets[:-1].copy()
    for piece in pieces:
        piece.write(buffer, position)
        position += piece.widths
    return EncodedRows(buffer.tobytes(), offsets)


@dataclass(frozen=True)
class _Piece:
    """Per row: the first ``widths[i]`` bytes of ``data[i]``."""

    widths: npt.NDArray[np.int64]
    data: npt.NDArray[np.uint8]

    def write(self, buffer: npt.NDArray[np.uint8], position: npt.NDArray[np.int64]) -> None:
        width = self.data.shape[1]
        if (self.widths == width).all():  # fixed width: one scatter
            buffer[position[:, None] + np.arange(width)] = self.data
            return
        for k in range(width):
            rows = self.widths > k
            buffer[position[rows] + k] = self.data[rows, k]


def _field_pieces(
    kind: AvroKind, values: npt.NDArray[Any], present: npt.NDArray[np.bool_] | None
) -> list[_Piece]:
    n = len(values)
    if kind == "long":
        return [_varints(values.astype(np.int64))]
    if kind == "string":
        encoded = values if values.dtype.kind == "S" else np.char.encode(values.astype(str))
        lengths = np.char.str_len(encoded).astype(np.int64)
        width = encoded.dtype.itemsize
        chars = encoded.view(np.uint8).reshape(n, width) if width else np.empty((n, 0), np.uint8)
        return [_varints(lengths), _Piece(lengths, chars)]
    dtype = "<f8" if kind == "double" else "<f4"
    size = np.dtype(dtype).itemsize
    data = np.ascontiguousarray(values.astype(dtype)).view(np.uint8).reshape(n, size)
    widths = np.full(n, size, dtype=np.int64)
    if present is not None:
        widths[~present] = 0  # a null is its union index alone
    return [_Piece(widths, data)]


def _varints(values: npt.NDArray[np.int64]) -> _Piece:
    """Avro longs: zigzag, then 7 bits a byte, low bits first, high bit = more to come."""
    zigzag = ((values << 1) ^ (values >> 63)).view(np.uint64)
    shifts = np.arange(0, 70, 7, dtype=np.uint64)
    groups = ((zigzag[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    nonzero = groups != 0
    # Bytes up to the highest non-zero group (at least one byte).
    widths = np.where(nonzero.any(axis=1), 10 - np.argmax(nonzero[:, ::-1], axis=1), 1)
    more = np.arange(10)[None, :] < (widths - 1)[:, None]
    return _Piece(widths.astype(np.int64), groups | (more.astype(np.uint8) << 7))


def _long(value: int) -> bytes:
    """One Avro long (zigzag varint)."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


# Branches of a ["null", X] union, and the end of an array's blocks.
_BRANCH_NULL: Final = _long(0)
_BRANCH_VALUE: Final = _long(1)
_ARRAY_END: Final = _long(0)


def _array(items: bytes, count: int) -> bytes:
    """An Avro array in one block, as fastavro writes it: count, items, then the end (0)."""
    return _long(count) + items + _ARRAY_END if count else _ARRAY_END


@dataclass(frozen=True, slots=True)
class EncodedSeries:
    """One object's records in time order: rows ``start …`` of a batch's encoded rows."""

    rows: EncodedRows
    start: int
    times: list[float]

    def window(self, begin: float, end: float) -> tuple[bytes, int]:
        """The records with ``begin ≤ time < end`` and how many there are."""
        low, high = bisect_left(self.times, begin), bisect_left(self.times, end)
        return self.rows.span(self.start + low, self.start + high), high - low


@dataclass(frozen=True, slots=True)
class ObjectHistory:
    """What an object's alerts are built from: its diaObject, diaSources and forced sources.

    ``sources`` must start with the object's first source (its first detection); both series
    may stop at the last alert to be built.
    """

    diaobject: bytes
    isddf: bool
    sources: EncodedSeries
    forced: EncodedSeries


def encode_alert(
    alert_id: int, source: bytes, time: float, history: ObjectHistory, history_days: float
) -> bytes:
    """The schemaless ``elasticc.v0_9_1.alert`` of one diaSource (``source``, at ``time``)."""
    first = min(history.sources.times[0], time) if history.sources.times else time
    prv_sources = history.sources.window(time - history_days, time)
    prv_forced = (b"", 0)
    if time - first > FORCED_AFTER_FIRST_DETECTION_DAYS:
        begin = max(time - history_days, first - FORCED_BEFORE_FIRST_DETECTION_DAYS)
        prv_forced = history.forced.window(begin, time)
    return b"".join(
        (
            _long(alert_id),
            source,
            _BRANCH_VALUE,  # prvDiaSources: an array, never null (as the DESC TOM sent them)
            _array(*prv_sources),
            _BRANCH_VALUE,
            _array(*prv_forced),
            _BRANCH_VALUE,
            history.diaobject,
        )
    )


@dataclass(frozen=True)
class EncodedBatch:
    """A batch's rows, encoded once and indexed, ready to make its alerts."""

    histories: dict[int, ObjectHistory]
    sources: dict[int, tuple[int, bytes, float]]
    """diaSourceId → (diaObjectId, encoded diaSource, time)."""

    def messages(self, alert_id: int, diasource_id: int) -> list[tuple[str, bytes]]:
        """The (topic, payload) messages of one alert: one for WFD, two for DDF."""
        object_id, source, time = self.sources[diasource_id]
        history = self.histories[object_id]
        return [
            (route.topic, encode_alert(alert_id, source, time, history, route.history_days))
            for route in routes(history.isddf)
        ]


def encode_batch(
    objects: Mapping[str, npt.ArrayLike],
    sources: Mapping[str, npt.ArrayLike],
    forced: Mapping[str, npt.ArrayLike],
) -> EncodedBatch:
    """Encode a batch's rows (columns named like the Avro fields; objects also ``isddf``).

    ``sources`` and ``forced`` must be ordered by object, then time.
    """
    encoded_objects = encode_records(DIA_OBJECT, objects)
    encoded_sources = encode_records(DIA_SOURCE, sources)
    source_series = _series(encoded_sources, sources)
    forced_series = _series(encode_records(DIA_FORCED_SOURCE, forced), forced)
    nothing = EncodedSeries(encoded_sources, 0, [])
    object_ids = np.asarray(objects["diaObjectId"]).tolist()
    histories = {
        object_id: ObjectHistory(
            diaobject=encoded_objects.span(row, row + 1),
            isddf=bool(isddf),
            sources=source_series.get(object_id, nothing),
            forced=forced_series.get(object_id, nothing),
        )
        for row, (object_id, isddf) in enumerate(
            zip(object_ids, np.asarray(objects["isddf"]).tolist(), strict=True)
        )
    }
    source_rows = zip(
        np.asarray(sources["diaSourceId"]).tolist(),
        np.asarray(sources["diaObjectId"]).tolist(),
        np.asarray(sources["midPointTai"]).tolist(),
        strict=True,
    )
    by_id = {
        source_id: (object_id, encoded_sources.span(row, row + 1), time)
        for row, (source_id, object_id, time) in enumerate(source_rows)
    }
    return EncodedBatch(histories, by_id)


def _series(encoded: EncodedRows, columns: Mapping[str, npt.ArrayLike]) -> dict[int, EncodedSeries]:
    """Each object's range of rows (rows ordered by object, then time)."""
    object_ids = np.asarray(columns["diaObjectId"])
    times = np.asarray(columns["midPointTai"]).tolist()
    ids, starts, counts = np.unique(object_ids, return_index=True, return_counts=True)
    return {
        object_id: EncodedSeries(encoded, start, times[start : start + count])
        for object_id, start, count in zip(
            ids.tolist(), starts.tolist(), counts.tolist(), strict=True
        )
    }

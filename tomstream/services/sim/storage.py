"""The ``sim`` tables: bulk loading (binary COPY from numpy) and the sender's batched reads.

A loader (SNANA or synthetic) hands over a :class:`SimBatch`: the objects, their truth and their
epochs as numpy columns. :func:`write_batch` derives the forced sources, sources and alerts
with the ELAsTiCC2 rules of :mod:`tomstream.services.sim.alerts` and writes all five tables in one
transaction: each table is COPYed (PostgreSQL's binary format, built with numpy without a
Python loop over rows) into a temporary staging table, then ``INSERT … ON CONFLICT DO NOTHING``
keeps what is already there, so loading the same data twice adds nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import psycopg
from pydantic import BaseModel, ConfigDict

from tomstream.services.sim.alerts import (
    DIA_FORCED_SOURCE,
    DIA_OBJECT,
    DIA_SOURCE,
    TOPIC_DDF_FULL,
    TOPIC_DDF_LIMITED,
    TOPIC_WFD,
    forced_source_ids,
    record_layout,
)


class SimError(Exception):
    """A user-facing failure of a ``tomstream sim`` command: bad input, nothing loaded, …"""


# ------------------------------------------------------------------------------------ tables

PgType = Literal["int8", "int4", "float8", "float4", "bool", "text"]
Array = npt.NDArray[np.generic]
Columns = Mapping[str, Array | None]
"""Table columns by name; None is a column of NULLs."""

HOSTGAL_FIELDS: Final = (
    "ellipticity",
    "sqradius",
    "zspec",
    "zspec_err",
    "zphot",
    "zphot_err",
    *(f"zphot_q{q:03d}" for q in range(0, 101, 10)),
    *(f"mag_{band}" for band in "ugrizy"),
    "ra",
    "dec",
    "snsep",
    *(f"magerr_{band}" for band in "ugrizy"),
)
"""The host-galaxy fields of the ELAsTiCC2 diaObject, for ``hostgal_`` and ``hostgal2_``."""
OBJECT_FLOAT_COLUMNS: Final = (
    "mwebv",
    "mwebv_err",
    "z_final",
    "z_final_err",
    "z_helio",
    "z_helio_err",
    *(f"hostgal{host}_{name}" for host in ("", "2") for name in HOSTGAL_FIELDS),
)
PEAKMAG_COLUMNS: Final = tuple(f"peakmag_{band}" for band in "ugrizy")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, PgType], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


OBJECTS: Final = Table(
    "sim.diaobject",
    (
        ("diaobject_id", "int8"),
        ("isddf", "bool"),
        ("simversion", "text"),
        ("ra", "float8"),
        ("decl", "float8"),
        *((name, "float4") for name in OBJECT_FLOAT_COLUMNS),
    ),
)
TRUTH: Final = Table(
    "sim.object_truth",
    (
        ("diaobject_id", "int8"),
        ("gentype", "int4"),
        ("sim_model_name", "text"),
        ("sim_template_index", "int4"),
        ("zcmb", "float4"),
        ("zhelio", "float4"),
        ("peakmjd", "float8"),
        ("mjd_detect_first", "float8"),
        ("mjd_detect_last", "float8"),
        *((name, "float4") for name in PEAKMAG_COLUMNS),
    ),
)
FORCED_SOURCES: Final = Table(
    "sim.diaforcedsource",
    (
        ("diaforcedsource_id", "int8"),
        ("diaobject_id", "int8"),
        ("midpointtai", "float8"),
        ("filtername", "text"),
        ("psflux", "float4"),
        ("psfluxerr", "float4"),
    ),
)
SOURCES: Final = Table(
    "sim.diasource",
    (
        ("diasource_id", "int8"),
        ("diaobject_id", "int8"),
        ("midpointtai", "float8"),
        ("filtername", "text"),
        ("ra", "float8"),
        ("decl", "float8"),
        ("psflux", "float4"),
        ("psfluxerr", "float4"),
        ("snr", "float4"),
    ),
)
ALERTS: Final = Table(
    "sim.alert",
    (
        ("alert_id", "int8"),
        ("diasource_id", "int8"),
        ("diaobject_id", "int8"),
        ("midpointtai", "float8"),
    ),
)


# --------------------------------------------------------------------------- batches to load


@dataclass(frozen=True)
class Epochs:
    """Every real epoch of a batch's objects, in object order then time order."""

    object_index: npt.NDArray[np.int64]
    """Row of the epoch's object in the batch's object columns."""
    epoch_index: npt.NDArray[np.int64]
    """Position of the epoch in its object's light curve (the forced-source id's suffix)."""
    mjd: npt.NDArray[np.float64]
    band: Array
    """Band names (``u g r i z Y``) as a numpy string array."""
    flux: npt.NDArray[np.float64]
    """nJy (zero point 31.4)."""
    flux_err: npt.NDArray[np.float64]
    detected: npt.NDArray[np.bool_]
    """Detections: these epochs are also diaSources, and each makes an alert."""


@dataclass(frozen=True)
class SimBatch:
    """Objects with their truth and epochs, ready for :func:`write_batch`."""

    objects: Columns
    """The ``sim.diaobject`` columns."""
    truth: Columns
    """The ``sim.object_truth`` columns (same rows as ``objects``)."""
    epochs: Epochs

    def __len__(self) -> int:
        return len(self.objects["diaobject_id"])

    def forced_sources(self) -> Columns:
        e = self.epochs
        object_ids = np.asarray(self.objects["diaobject_id"])[e.object_index]
        return {
            "diaforcedsource_id": forced_source_ids(object_ids, e.epoch_index),
            "diaobject_id": object_ids,
            "midpointtai": e.mjd,
            "filtername": e.band,
            "psflux": e.flux,
            "psfluxerr": e.flux_err,
        }

    def sources(self) -> Columns:
        forced = self.forced_sources()
        detected = self.epochs.detected
        rows = self.epochs.object_index[detected]
        flux, flux_err = self.epochs.flux[detected], self.epochs.flux_err[detected]
        return {
            "diasource_id": forced["diaforcedsource_id"][detected],
            "diaobject_id": forced["diaobject_id"][detected],
            "midpointtai": self.epochs.mjd[detected],
            "filtername": self.epochs.band[detected],
            # Sources sit at their object's position: the simulation has no astrometric scatter.
            "ra": np.asarray(self.objects["ra"])[rows],
            "decl": np.asarray(self.objects["decl"])[rows],
            "psflux": flux,
            "psfluxerr": flux_err,
            "snr": flux / flux_err,
        }


class Counts(BaseModel):
    """Rows of a load: objects, alerts (= diaSources) and forced sources."""

    model_config = ConfigDict(frozen=True)

    objects: int = 0
    alerts: int = 0
    forced_sources: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            objects=self.objects + other.objects,
            alerts=self.alerts + other.alerts,
            forced_sources=self.forced_sources + other.forced_sources,
        )


def write_batch(conn: psycopg.Connection, batch: SimBatch) -> Counts:
    """Write a batch in one transaction; return the rows that were new."""
    sources = batch.sources()
    alerts = {
        "alert_id": sources["diasource_id"],
        "diasource_id": sources["diasource_id"],
        "diaobject_id": sources["diaobject_id"],
        "midpointtai": sources["midpointtai"],
    }
    with conn.transaction():
        objects = copy_insert(conn, OBJECTS, batch.objects)
        copy_insert(conn, TRUTH, batch.truth)
        forced = copy_insert(conn, FORCED_SOURCES, batch.forced_sources())
        copy_insert(conn, SOURCES, sources)
        new_alerts = copy_insert(conn, ALERTS, alerts)
    return Counts(objects=objects, alerts=new_alerts, forced_sources=forced)


def batch_counts(batch: SimBatch) -> Counts:
    """The rows a batch holds (whether new or not)."""
    return Counts(
        objects=len(batch),
        alerts=int(batch.epochs.detected.sum()),
        forced_sources=len(batch.epochs.mjd),
    )


def table_counts(conn: psycopg.Connection) -> Counts:
    """The rows in the ``sim`` tables."""
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM {OBJECTS.name}), (SELECT count(*) FROM {ALERTS.name}), "
        f"(SELECT count(*) FROM {FORCED_SOURCES.name})"
    ).fetchone()
    assert row is not None
    return Counts(objects=row[0], alerts=row[1], forced_sources=row[2])


# ------------------------------------------------------------------------------ binary COPY

_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER: Final = struct.pack(">h", -1)
_BINARY_DTYPES: Final[Mapping[PgType, str]] = {
    "int8": ">i8",
    "int4": ">i4",
    "float8": ">f8",
    "float4": ">f4",
    "bool": "?",
}


def binary_copy_rows(table: Table, data: Columns) -> Iterator[bytes]:
    """The rows of ``data`` in PostgreSQL's binary COPY format (no header, no trailer).

    Each row is a 16-bit field count, then per field a 32-bit length (-1: NULL) and the
    big-endian value. With fixed-width fields every row has the same layout, i.e. one numpy
    structured dtype, so each column is written in one assignment. Text fields vary in length:
    rows are grouped by the lengths of their text fields (a handful of groups: bands are one
    letter, versions and model names few), one structured array per group; COPY does not care
    about row order. A column given as None is NULL in every row.
    """
    present = {name: np.asarray(values) for name, values in data.items() if values is not None}
    sizes = {name: len(values) for name, values in present.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"columns of {table.name} differ in length: {sizes}")
    text = {
        name: _utf8(present[name])
        for name, pgtype in table.columns
        if pgtype == "text" and name in present
    }
    for text_widths, rows in _rows_by_text_widths(text):
        fields: list[tuple[str, str]] = [("field count", ">i2")]
        field_lengths: dict[str, int] = {}
        for name, pgtype in table.columns:
            if data[name] is None:
                dtype, field_lengths[name] = "", -1
            elif pgtype == "text":
                field_lengths[name] = text_widths[name]
                dtype = f"S{text_widths[name]}" if text_widths[name] else ""
            else:
                dtype = _BINARY_DTYPES[pgtype]
                field_lengths[name] = np.dtype(dtype).itemsize
            fields.append((f"{name} length", ">i4"))
            if dtype:  # NULL and empty text are their length alone
                fields.append((name, dtype))
        out = np.empty(len(next(iter(present.values()))[rows]), dtype=fields)
        out["field count"] = len(table.columns)
        for name, length in field_lengths.items():
            out[f"{name} length"] = length
            if name in out.dtype.names:
                out[name] = text.get(name, present[name])[rows]
        yield out.tobytes()


RowSelection = npt.NDArray[np.bool_] | slice


def _rows_by_text_widths(
    text: Mapping[str, Array],
) -> Iterator[tuple[dict[str, int], RowSelection]]:
    """Groups of rows whose text fields have the same byte lengths."""
    if not text:
        yield {}, slice(None)
        return
    widths = np.stack([np.char.str_len(values) for values in text.values()], axis=1)
    groups, inverse = np.unique(widths, axis=0, return_inverse=True)
    for number, group in enumerate(groups):
        yield dict(zip(text, map(int, group), strict=True)), inverse.ravel() == number


def _utf8(values: Array) -> Array:
    array = np.asarray(values)
    return array if array.dtype.kind == "S" else np.char.encode(array.astype(str), "utf-8")


def copy_insert(conn: psycopg.Connection, table: Table, data: Columns) -> int:
    """COPY ``data`` into a staging table, insert what is new into ``table``; return its count.

    Call inside a transaction: the staging table is emptied at commit.
    """
    if len(np.asarray(data[table.columns[0][0]])) == 0:
        return 0
    stage = "stage_" + table.name.replace(".", "_")
    columns = ", ".join(table.column_names)
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            for chunk in binary_copy_rows(table, data):
                copy.write(chunk)
            copy.write(_COPY_TRAILER)
        cursor.execute(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {stage} "
            "ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount


# ------------------------------------------------------------------------------- send reads


@dataclass(frozen=True, slots=True)
class PendingAlert:
    alert_id: int
    diasource_id: int
    diaobject_id: int
    midpointtai: float


def has_alerts(conn: psycopg.Connection) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {ALERTS.name})").fetchone()
    return bool(row and row[0])


def last_sent_mjd(conn: psycopg.Connection) -> float | None:
    """The time of the latest alert sent so far (None before the first send)."""
    row = conn.execute(
        f"SELECT max(midpointtai) FROM {ALERTS.name} WHERE sent_at IS NOT NULL"
    ).fetchone()
    return None if row is None else row[0]


def count_unsent(conn: psycopg.Connection, through_mjd: float) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {ALERTS.name} WHERE sent_at IS NULL AND midpointtai <= %s",
        (through_mjd,),
    ).fetchone()
    return int(row[0]) if row else 0


def next_unsent(conn: psycopg.Connection, through_mjd: float, limit: int) -> list[PendingAlert]:
    """The next ``limit`` unsent alerts through ``through_mjd``, in time order."""
    rows = conn.execute(
        f"SELECT alert_id, diasource_id, diaobject_id, midpointtai FROM {ALERTS.name} "
        "WHERE sent_at IS NULL AND midpointtai <= %s ORDER BY midpointtai, alert_id LIMIT %s",
        (through_mjd, limit),
    ).fetchall()
    return [PendingAlert(*row) for row in rows]


def _avro_object_field(column: str) -> str:
    special = {"diaobject_id": "diaObjectId", "simversion": "simVersion"}
    if column in special:
        return special[column]
    # The record spells the Y band in capitals (hostgal_mag_Y); PostgreSQL folds it.
    return column[:-2] + "_Y" if column.endswith("_y") else column


OBJECT_AVRO_FIELDS: Final = {
    column: _avro_object_field(column)
    for column in (
        "diaobject_id",
        "simversion",
        "ra",
        "decl",
        *(c for c in OBJECT_FLOAT_COLUMNS if not c.startswith("z_helio")),
    )
}
"""``sim.diaobject`` column → field of the alert's diaObject record (all of its fields)."""
_OBJECT_SELECT: Final = ", ".join(f'{c} AS "{f}"' for c, f in OBJECT_AVRO_FIELDS.items())
_SOURCE_SELECT: Final = (
    'diasource_id AS "diaSourceId", diaobject_id AS "diaObjectId", '
    'midpointtai AS "midPointTai", filtername AS "filterName", ra, decl, '
    'psflux AS "psFlux", psfluxerr AS "psFluxErr", snr'
)
_FORCED_SELECT: Final = (
    'diaforcedsource_id AS "diaForcedSourceId", diaobject_id AS "diaObjectId", '
    'midpointtai AS "midPointTai", filtername AS "filterName", '
    'psflux AS "psFlux", psfluxerr AS "psFluxErr"'
)


@dataclass(frozen=True)
class BatchRows:
    """What a batch of alerts is built from, as numpy columns named like the Avro fields."""

    objects: Columns
    """diaObject fields (NaN for NULL), plus ``isddf``."""
    sources: Columns
    """diaSource fields, ordered by object then time."""
    forced: Columns
    """diaForcedSource fields, ordered by object then time."""


_NUMPY_TYPES: Final = {"long": np.int64, "double": np.float64, "float": np.float64, "string": str}


def _fetch_columns(cursor: psycopg.Cursor, schema_name: str) -> dict[str, Array]:
    """The cursor's rows as one array per column, typed by the record's Avro fields."""
    rows = cursor.fetchall()
    assert cursor.description is not None
    names = [column.name for column in cursor.description]
    kinds = {field.name: _NUMPY_TYPES[field.kind] for field in record_layout(schema_name)}
    kinds["isddf"] = np.bool_
    values = zip(*rows, strict=True) if rows else ((),) * len(names)
    # None (SQL NULL) in a float column becomes NaN, which the encoder writes as null.
    return {
        name: np.array(column, dtype=kinds[name])
        for name, column in zip(names, values, strict=True)
    }


def read_batch(
    conn: psycopg.Connection, alerts: Sequence[PendingAlert], history_days: float
) -> BatchRows:
    """Everything the alerts of a batch need, in three queries (not three per alert).

    Sources: all of each object's sources up to the batch's last alert (the first one is the
    first detection). Forced sources: from ``history_days`` before the batch's first alert to
    its last; each alert then takes its own window of these.
    """
    object_ids = sorted({alert.diaobject_id for alert in alerts})
    first = min(alert.midpointtai for alert in alerts)
    last = max(alert.midpointtai for alert in alerts)
    # Binary results: numbers arrive as machine values, several times faster than as text.
    with conn.cursor(binary=True) as cursor:
        cursor.execute(
            f"SELECT isddf, {_OBJECT_SELECT} FROM {OBJECTS.name} WHERE diaobject_id = ANY(%b)",
            (object_ids,),
        )
        objects = _fetch_columns(cursor, DIA_OBJECT)
        cursor.execute(
            f"SELECT {_SOURCE_SELECT} FROM {SOURCES.name} "
            "WHERE diaobject_id = ANY(%b) AND midpointtai <= %s "
            "ORDER BY diaobject_id, midpointtai, diasource_id",
            (object_ids, last),
        )
        sources = _fetch_columns(cursor, DIA_SOURCE)
        cursor.execute(
            f"SELECT {_FORCED_SELECT} FROM {FORCED_SOURCES.name} "
            "WHERE diaobject_id = ANY(%b) AND midpointtai >= %s AND midpointtai < %s "
            "ORDER BY diaobject_id, midpointtai, diaforcedsource_id",
            (object_ids, first - history_days, last),
        )
        forced = _fetch_columns(cursor, DIA_FORCED_SOURCE)
    missing = set(object_ids) - set(objects["diaObjectId"].tolist())
    if missing:
        raise SimError(f"alerts refer to diaObjects that are not loaded: {sorted(missing)[:5]}")
    return BatchRows(objects=objects, sources=sources, forced=forced)


# ------------------------------------------------------------------------------ send writes


def start_send_log(conn: psycopg.Connection, through_mjd: float, topic_prefix: str) -> int:
    row = conn.execute(
        "INSERT INTO sim.send_log (through_mjd, topic_prefix) VALUES (%s, %s) RETURNING send_id",
        (through_mjd, topic_prefix),
    ).fetchone()
    assert row is not None
    return int(row[0])


def mark_sent(
    conn: psycopg.Connection,
    send_id: int,
    alert_ids: Sequence[int],
    messages: Mapping[str, int],
) -> None:
    """Record a delivered batch: its alerts are sent, the run's counts grow (one transaction)."""
    with conn.transaction():
        conn.execute(
            f"UPDATE {ALERTS.name} SET sent_at = now(), send_id = %s WHERE alert_id = ANY(%b)",
            (send_id, list(alert_ids)),
        )
        conn.execute(
            "UPDATE sim.send_log SET alerts = alerts + %s, wfd_messages = wfd_messages + %s, "
            "ddf_full_messages = ddf_full_messages + %s, "
            "ddf_limited_messages = ddf_limited_messages + %s WHERE send_id = %s",
            (
                len(alert_ids),
                messages.get(TOPIC_WFD, 0),
                messages.get(TOPIC_DDF_FULL, 0),
                messages.get(TOPIC_DDF_LIMITED, 0),
                send_id,
            ),
        )


def finish_send_log(conn: psycopg.Connection, send_id: int) -> None:
    conn.execute("UPDATE sim.send_log SET finished_at = now() WHERE send_id = %s", (send_id,))

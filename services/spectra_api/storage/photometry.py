"""Objects and their light curves, read from what ingest stores (migration 0003).

A light curve is FASTDB's default "patch" curve: the object's forced photometry, plus its own
detections at epochs that have no forced point (yet): alerts carry forced photometry only for
earlier epochs, so the newest detections would otherwise be missing. One point per epoch (a
detection and a forced point of one visit share its band and its midpoint time exactly), in
time order. Points are read as numpy arrays and merged there: gethottransients reads hundreds
of thousands of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

# The diaObject record's names of the host-galaxy fields that include_hostinfo returns.
HOST_PROPERTIES = {
    **{f"hostgal_mag_{b.lower()}": f"hostgal_mag_{b}" for b in "ugrizY"},
    **{f"hostgal_magerr_{b.lower()}": f"hostgal_magerr_{b}" for b in "ugrizY"},
    "hostgal_ellipticity": "hostgal_ellipticity",
    "hostgal_sqradius": "hostgal_sqradius",
    "hostgal_snsep": "hostgal_snsep",
}


@dataclass(frozen=True, slots=True)
class StoredObject:
    object_id: int
    ra: float
    dec: float
    redshift: float | None  # the latest spectrum's z, else the alerts' z_final
    class_id: int | None  # the latest spectrum's class id
    host: dict[str, Any] | None  # only when asked for


@dataclass(frozen=True, slots=True)
class Curve:
    """One object's points in time order: numpy arrays (lists in tests) and band names."""

    mjd: Sequence[float]
    band: Sequence[str]
    flux: Sequence[float]
    fluxerr: Sequence[float]


EMPTY_CURVE = Curve([], [], [], [])


def objects(
    conn: psycopg.Connection, object_ids: Sequence[int], *, with_host: bool
) -> list[StoredObject]:
    """The objects that exist among ``object_ids``, in ascending id."""
    host = (
        sql.SQL(", ").join(
            sql.SQL("o.properties -> {}").format(sql.Literal(name))
            for name in HOST_PROPERTIES.values()
        )
        if with_host
        else sql.SQL("NULL")
    )
    # The reports are aggregated per object once and merged with the objects, rather than
    # looked up object by object: thousands of hot objects, few reports.
    query = sql.SQL(
        """SELECT o.diaobject_id, o.ra, o.decl,
                  coalesce(spec.z, CASE WHEN o.redshift >= 0 THEN o.redshift END),
                  spec.classid, {host}
           FROM diaobject o
           LEFT JOIN (
               SELECT diaobject_id,
                      (array_agg(z ORDER BY inserted_at DESC, specinfo_id DESC)
                          FILTER (WHERE z IS NOT NULL))[1] AS z,
                      (array_agg(classid ORDER BY inserted_at DESC, specinfo_id DESC)
                          FILTER (WHERE classid IS NOT NULL))[1] AS classid
               FROM spectrum_info WHERE diaobject_id = ANY(%(ids)s)
               GROUP BY diaobject_id
           ) spec USING (diaobject_id)
           WHERE o.diaobject_id = ANY(%(ids)s)
           ORDER BY o.diaobject_id"""
    ).format(host=host)
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(query, {"ids": list(object_ids)}).fetchall()
    return [
        StoredObject(
            object_id=row[0],
            ra=row[1],
            dec=row[2],
            redshift=row[3],
            class_id=row[4],
            host=dict(zip(HOST_PROPERTIES, row[5:], strict=True)) if with_host else None,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Points:
    """Photometry rows of one table as columns (numpy arrays, in no particular order)."""

    object_id: np.ndarray
    mjd: np.ndarray
    band: np.ndarray  # one byte per point: bands are single letters
    flux: np.ndarray
    fluxerr: np.ndarray


def points(
    conn: psycopg.Connection, table: str, object_ids: Sequence[int], mjd_now: float | None
) -> Points:
    """The rows of ``diaforcedsource`` or ``diasource`` of these objects up to ``mjd_now``.

    PostgreSQL concatenates each column's binary values into one bytea, which numpy reads as
    an array: no Python object per point, one row over the wire.
    """
    until = sql.SQL("AND mjd <= %s") if mjd_now is not None else sql.SQL("")
    query = sql.SQL(
        "SELECT count(*), string_agg(int8send(diaobject_id), ''), string_agg(float8send(mjd), ''), "
        "string_agg(convert_to(band, 'UTF8'), ''), string_agg(float4send(flux), ''), "
        "string_agg(float4send(flux_err), '') "
        "FROM {table} WHERE diaobject_id = ANY(%s) {until}"
    ).format(table=sql.Identifier(table), until=until)
    params = (list(object_ids), mjd_now) if mjd_now is not None else (list(object_ids),)
    with conn.cursor(binary=True) as cursor:
        row = cursor.execute(query, params).fetchone()
    assert row is not None
    count, *columns = row
    if not count:
        return EMPTY_POINTS
    found = Points(
        object_id=np.frombuffer(columns[0], ">i8").astype(np.int64),
        mjd=np.frombuffer(columns[1], ">f8").astype(np.float64),
        band=np.frombuffer(columns[2], np.uint8),
        flux=np.frombuffer(columns[3], ">f4").astype(np.float32),
        fluxerr=np.frombuffer(columns[4], ">f4").astype(np.float32),
    )
    if len(found.band) != count:
        raise ValueError(f"{table} holds a band name longer than one letter")
    return found


EMPTY_POINTS = Points(
    np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8), np.zeros(0, np.float32),
    np.zeros(0, np.float32),
)  # fmt: skip
_BAND_NAMES = np.array([chr(code) for code in range(256)], dtype=object)


def patched(forced: Points, detected: Points, object_ids: Sequence[int]) -> dict[int, Curve]:
    """Forced points plus the detections at epochs (band and time) without one, per object in
    time order; objects without any point are absent. ``object_ids``: every object the points
    may belong to, in ascending order."""
    kind = np.concatenate([np.zeros(len(forced.mjd), np.int8), np.ones(len(detected.mjd), np.int8)])
    object_id, mjd, band, flux, fluxerr = (
        np.concatenate([getattr(forced, name), getattr(detected, name)])
        for name in ("object_id", "mjd", "band", "flux", "fluxerr")
    )
    if not len(object_id):
        return {}
    # Forced points first, then detections; a stable sort by object and time keeps that order
    # within an epoch, so a detection right after a forced point of the same object, time and
    # band is that epoch's second point, and goes. Each input already comes in (object, time)
    # order from its index, so the sort is mostly a merge of two runs.
    order = _object_time_order(np.asarray(object_ids, dtype=np.int64), object_id, mjd)
    object_id, mjd, band, kind = object_id[order], mjd[order], band[order], kind[order]
    duplicate = np.zeros(len(order), dtype=bool)
    duplicate[1:] = (
        (kind[1:] == 1)
        & (object_id[1:] == object_id[:-1])
        & (mjd[1:] == mjd[:-1])
        & (band[1:] == band[:-1])
    )
    keep = ~duplicate
    object_id, mjd, band = object_id[keep], mjd[keep], band[keep]
    flux, fluxerr = flux[order[keep]], fluxerr[order[keep]]
    names = _BAND_NAMES[band].tolist()
    starts = np.flatnonzero(np.r_[True, object_id[1:] != object_id[:-1]])
    ends = [*starts[1:].tolist(), len(mjd)]
    runs = zip(object_id[starts].tolist(), starts.tolist(), ends, strict=True)
    return {oid: Curve(mjd[a:b], names[a:b], flux[a:b], fluxerr[a:b]) for oid, a, b in runs}


_MS_PER_DAY = 86_400_000


def _object_time_order(objects: np.ndarray, object_id: np.ndarray, mjd: np.ndarray) -> np.ndarray:
    """The stable order by object, then time. One int64 key per point (object rank, then the
    time to the millisecond: visits are seconds apart, the two points of an epoch have the very
    same time) sorts in one pass; when that key could overflow, two-key lexsort."""
    rank = np.searchsorted(objects, object_id)
    first = float(mjd.min())
    span = int((float(mjd.max()) - first) * _MS_PER_DAY) + 2
    if len(objects) * span >= 2**62:
        return np.lexsort((mjd, object_id))
    ms = np.round((mjd - first) * _MS_PER_DAY).astype(np.int64)
    return np.argsort(rank.astype(np.int64) * span + ms, kind="stable")


def detected_objects(
    conn: psycopg.Connection, since_mjd: float, until_mjd: float | None
) -> list[int]:
    """Objects with at least one detection (diaSource) in ``[since_mjd, until_mjd]``, in
    ascending id."""
    until = sql.SQL("AND mjd <= %(until)s") if until_mjd is not None else sql.SQL("")
    query = sql.SQL(
        "SELECT array_agg(DISTINCT diaobject_id) FROM diasource "
        "WHERE mjd >= %(since)s {until} AND diaobject_id IS NOT NULL"
    ).format(until=until)
    with conn.cursor(binary=True) as cursor:
        row = cursor.execute(query, {"since": since_mjd, "until": until_mjd}).fetchone()
    return list(row[0] or []) if row else []

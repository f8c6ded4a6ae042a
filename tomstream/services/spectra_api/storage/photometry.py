"""Objects and their light curves, read from what ingest stores (migration 0003).

A light curve is FASTDB's default "patch" curve: the object's forced photometry, plus its own
detections at epochs that have no forced point (yet): alerts carry forced photometry only for
earlier epochs, so the newest detections would otherwise be missing. One point per epoch (a
detection and a forced point of one visit share its band and its midpoint time exactly), in
time order. gethottransients reads 15,000 objects and 400,000 points per request, so objects
and points are read as columns (lists, numpy arrays), never as a Python object per row.
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


def id_array(object_ids: Sequence[int]) -> str:
    """The ids as a PostgreSQL array literal, for ``= ANY(%s::bigint[])``: psycopg dumps a
    list element by element in Python, which costs 10 ms for 15,000 ids; this costs 2."""
    return "{" + ",".join(map(str, object_ids)) + "}"


@dataclass(frozen=True, slots=True)
class StoredObjects:
    """Objects as parallel columns, in ascending id."""

    object_id: list[int]
    ra: list[float]
    dec: list[float]
    redshift: list[float | None]  # the latest spectrum's z, else the alerts' z_final
    class_id: list[int | None]  # the latest spectrum's class id
    host: list[dict[str, Any]] | None  # only when asked for


def objects(conn: psycopg.Connection, object_ids: str, *, with_host: bool) -> StoredObjects:
    """The objects that exist among ``object_ids`` (an :func:`id_array`)."""
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
               FROM spectrum_info WHERE diaobject_id = ANY(%(ids)s::bigint[])
               GROUP BY diaobject_id
           ) spec USING (diaobject_id)
           WHERE o.diaobject_id = ANY(%(ids)s::bigint[])
           ORDER BY o.diaobject_id"""
    ).format(host=host)
    with conn.cursor(binary=True) as cursor:
        # Planned with the ids every time: the generic plan of a prepared statement would
        # search the whole id array for each report (15 ms for 4,000 ids).
        rows = cursor.execute(query, {"ids": object_ids}, prepare=False).fetchall()
    width = 5 + (len(HOST_PROPERTIES) if with_host else 1)
    columns = [list(column) for column in zip(*rows, strict=True)] or [[] for _ in range(width)]
    hosts = (
        [
            dict(zip(HOST_PROPERTIES, values, strict=True))
            for values in zip(*columns[5:], strict=True)
        ]
        if with_host
        else None
    )
    return StoredObjects(*columns[:5], host=hosts)


@dataclass(frozen=True, slots=True)
class Points:
    """Photometry rows of one table as columns (numpy arrays, in no particular order)."""

    object_id: np.ndarray
    mjd: np.ndarray
    band: np.ndarray  # one byte per point: bands are single letters
    flux: np.ndarray
    fluxerr: np.ndarray


def points(conn: psycopg.Connection, table: str, object_ids: str, mjd_now: float | None) -> Points:
    """The rows of ``diaforcedsource`` or ``diasource`` of these objects (an :func:`id_array`)
    up to ``mjd_now``.

    PostgreSQL concatenates each column's binary values into one bytea, which numpy reads as
    an array: no Python object per point, one row over the wire. The bands are concatenated
    as text and converted once (converting each one costs as much as a column).
    """
    until = sql.SQL("AND mjd <= %s") if mjd_now is not None else sql.SQL("")
    query = sql.SQL(
        "SELECT count(*), string_agg(int8send(diaobject_id), ''), string_agg(float8send(mjd), ''), "
        "convert_to(string_agg(band, ''), 'UTF8'), string_agg(float4send(flux), ''), "
        "string_agg(float4send(flux_err), '') "
        "FROM {table} WHERE diaobject_id = ANY(%s::bigint[]) {until}"
    ).format(table=sql.Identifier(table), until=until)
    params = (object_ids, mjd_now) if mjd_now is not None else (object_ids,)
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


@dataclass(frozen=True, slots=True)
class Curves:
    """The light curves of several objects, one after another in ascending object id, each in
    time order: the columns of :class:`Points`, with no Python object per object or point."""

    object_id: np.ndarray
    mjd: np.ndarray
    band: np.ndarray  # one byte per point: the band's letter
    flux: np.ndarray
    fluxerr: np.ndarray

    def bounds(self, object_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Where the points of each of ``object_ids`` (ascending) start and end; start = end
        for an object without points."""
        ids = np.asarray(object_ids, dtype=np.int64)
        return (
            np.searchsorted(self.object_id, ids, side="left"),
            np.searchsorted(self.object_id, ids, side="right"),
        )


def patched(forced: Points, detected: Points, object_ids: Sequence[int]) -> Curves:
    """The light curves of ``object_ids`` (ascending): forced points plus the detections at
    epochs (band and time) without one, per object in time order. Points of other objects
    (photometry of an id without a diaObject row) are left out."""
    objects = np.asarray(object_ids, dtype=np.int64)
    kind = np.concatenate([np.zeros(len(forced.mjd), np.int8), np.ones(len(detected.mjd), np.int8)])
    object_id, mjd, band, flux, fluxerr = (
        np.concatenate([getattr(forced, name), getattr(detected, name)])
        for name in ("object_id", "mjd", "band", "flux", "fluxerr")
    )
    rank = np.searchsorted(objects, object_id)
    known = np.zeros(len(object_id), dtype=bool)
    inside = rank < len(objects)
    known[inside] = objects[rank[inside]] == object_id[inside]
    if not known.all():
        rank, kind, object_id, mjd, band, flux, fluxerr = (
            column[known] for column in (rank, kind, object_id, mjd, band, flux, fluxerr)
        )
    if not len(object_id):
        return Curves(object_id, mjd, band, flux, fluxerr)
    # Forced points first, then detections; a stable sort by object and time keeps that order
    # within an epoch, so a detection right after a forced point of the same object, time and
    # band is that epoch's second point, and goes. Each input already comes in (object, time)
    # order from its index, so the sort is mostly a merge of two runs.
    order = _object_time_order(rank, len(objects), mjd)
    object_id, mjd, band, kind = object_id[order], mjd[order], band[order], kind[order]
    duplicate = np.zeros(len(order), dtype=bool)
    duplicate[1:] = (
        (kind[1:] == 1)
        & (object_id[1:] == object_id[:-1])
        & (mjd[1:] == mjd[:-1])
        & (band[1:] == band[:-1])
    )
    keep = ~duplicate
    kept = order[keep]
    return Curves(object_id[keep], mjd[keep], band[keep], flux[kept], fluxerr[kept])


_MS_PER_DAY = 86_400_000


def _object_time_order(rank: np.ndarray, objects: int, mjd: np.ndarray) -> np.ndarray:
    """The stable order by object (``rank``: its index among ``objects`` objects), then time.
    One int64 key per point (object rank, then the time to the millisecond: visits are seconds
    apart, the two points of an epoch have the very same time) sorts in one pass; when that key
    could overflow, two-key lexsort."""
    first = float(mjd.min())
    span = int((float(mjd.max()) - first) * _MS_PER_DAY) + 2
    if objects * span >= 2**62:
        return np.lexsort((mjd, rank))
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

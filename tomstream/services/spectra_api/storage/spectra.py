"""Wanted, planned and reported spectra in PostgreSQL (migration 0005)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from tomstream.avro import ALERT_FLUX_ZERO_POINT

# Forced photometry counts as a detection for spectrawanted's `latest` above this S/N.
LATEST_MIN_SNR = 3.0


def missing_objects(conn: psycopg.Connection, object_ids: Sequence[int]) -> list[int]:
    """The ids among ``object_ids`` that tomstream has no diaObject for."""
    rows = conn.execute(
        "SELECT id FROM unnest(%s::bigint[]) AS id "
        "WHERE NOT EXISTS (SELECT 1 FROM diaobject o WHERE o.diaobject_id = id) ORDER BY id",
        (list(object_ids),),
    ).fetchall()
    return [row[0] for row in rows]


def want(
    conn: psycopg.Connection,
    requester: str,
    priorities: dict[int, int],
    user_id: int,
) -> int:
    """Create or update one wanted entry per object (priority and time); return how many."""
    return conn.execute(
        """INSERT INTO wanted_spectrum (diaobject_id, requester, priority, user_id)
           SELECT id, %s, prio, %s FROM unnest(%s::bigint[], %s::smallint[]) AS t(id, prio)
           ON CONFLICT (diaobject_id, requester) DO UPDATE SET
               priority = EXCLUDED.priority, wanted_at = now(), user_id = EXCLUDED.user_id""",
        (requester, user_id, list(priorities), list(priorities.values())),
    ).rowcount


@dataclass(frozen=True, slots=True)
class Plan:
    object_id: int
    facility: str
    created_at: datetime
    plantime: datetime | None
    comment: str


def plan(
    conn: psycopg.Connection,
    object_id: int,
    facility: str,
    plantime: datetime | None,
    comment: str,
    user_id: int,
) -> Plan:
    """Record (or replace) the facility's plan for the object."""
    row = conn.execute(
        """INSERT INTO planned_spectrum (diaobject_id, facility, plantime, comment, user_id)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (diaobject_id, facility) DO UPDATE SET
               plantime = EXCLUDED.plantime, comment = EXCLUDED.comment,
               created_at = now(), user_id = EXCLUDED.user_id
           RETURNING diaobject_id, facility, created_at, plantime, comment""",
        (object_id, facility, plantime, comment, user_id),
    ).fetchone()
    assert row is not None
    return Plan(*row)


def remove_plan(conn: psycopg.Connection, object_id: int, facility: str) -> int:
    return conn.execute(
        "DELETE FROM planned_spectrum WHERE diaobject_id = %s AND facility = %s",
        (object_id, facility),
    ).rowcount


@dataclass(frozen=True, slots=True)
class Report:
    object_id: int
    facility: str
    mjd: float
    z: float | None
    classid: int | None
    inserted_at: datetime


def report(
    conn: psycopg.Connection,
    object_id: int,
    facility: str,
    mjd: float,
    z: float | None,
    classid: int | None,
    user_id: int,
) -> Report:
    """Store a spectrum report; the facility's plan and every wish for the object are done."""
    row = conn.execute(
        """INSERT INTO spectrum_info (diaobject_id, facility, mjd, z, classid, user_id)
           VALUES (%s, %s, %s, %s, %s, %s)
           RETURNING diaobject_id, facility, mjd, z, classid, inserted_at""",
        (object_id, facility, mjd, z, classid, user_id),
    ).fetchone()
    assert row is not None
    remove_plan(conn, object_id, facility)
    conn.execute("DELETE FROM wanted_spectrum WHERE diaobject_id = %s", (object_id,))
    return Report(*row)


@dataclass(frozen=True, slots=True)
class WantedWindow:
    """spectrawanted's filters, already resolved to absolute times."""

    requested_since: datetime
    claimed_since: datetime | None  # None: ignore plans
    spectrum_since_mjd: float | None  # None: ignore reported spectra
    detected_since_mjd: float
    mjd_now: float | None  # upper bound on detections and photometry


@dataclass(frozen=True, slots=True)
class Wanted:
    object_id: int
    ra: float
    dec: float
    requester: str
    priority: int
    latest: dict[str, tuple[float, float]]  # band -> (mjd, mag)


def wanted(conn: psycopg.Connection, window: WantedWindow) -> list[Wanted]:
    """Objects someone wants a spectrum of, by priority (highest first) then object id.

    One entry per object: its highest-priority request (ties: the requester first in
    alphabetical order). ``latest`` is, per band, the most recent forced point with S/N > 3.
    """
    filters = []
    if window.claimed_since is not None:
        filters.append(
            sql.SQL(
                "AND NOT EXISTS (SELECT 1 FROM planned_spectrum p "
                "WHERE p.diaobject_id = w.diaobject_id AND p.created_at >= %(claimed)s)"
            )
        )
    if window.spectrum_since_mjd is not None:
        filters.append(
            sql.SQL(
                "AND NOT EXISTS (SELECT 1 FROM spectrum_info s "
                "WHERE s.diaobject_id = w.diaobject_id AND s.mjd >= %(spectrum)s)"
            )
        )
    until = sql.SQL("AND {} <= %(now)s") if window.mjd_now is not None else sql.SQL("")
    query = sql.SQL(
        """WITH requests AS (
               SELECT DISTINCT ON (w.diaobject_id) w.diaobject_id, w.requester, w.priority
               FROM wanted_spectrum w
               WHERE w.wanted_at >= %(requested)s {filters}
                 AND EXISTS (SELECT 1 FROM diasource d
                             WHERE d.diaobject_id = w.diaobject_id
                               AND d.mjd >= %(detected)s {detections_until})
               ORDER BY w.diaobject_id, w.priority DESC, w.requester
           )
           SELECT r.diaobject_id, o.ra, o.decl, r.requester, r.priority,
                  array_remove(array_agg(l.band ORDER BY l.band), NULL),
                  array_remove(array_agg(l.mjd ORDER BY l.band), NULL),
                  array_remove(array_agg(l.mag ORDER BY l.band), NULL)
           FROM requests r
           JOIN diaobject o USING (diaobject_id)
           LEFT JOIN LATERAL (
               SELECT DISTINCT ON (f.band) f.band, f.mjd,
                      -2.5 * log(f.flux::float8) + %(zp)s AS mag
               FROM diaforcedsource f
               WHERE f.diaobject_id = r.diaobject_id AND f.flux > 0
                 AND f.flux > %(snr)s * f.flux_err {photometry_until}
               ORDER BY f.band, f.mjd DESC
           ) l ON true
           GROUP BY r.diaobject_id, o.ra, o.decl, r.requester, r.priority
           ORDER BY r.priority DESC, r.diaobject_id"""
    ).format(
        filters=sql.SQL(" ").join(filters),
        detections_until=until.format(sql.Identifier("d", "mjd")),
        photometry_until=until.format(sql.Identifier("f", "mjd")),
    )
    params = {
        "requested": window.requested_since,
        "claimed": window.claimed_since,
        "spectrum": window.spectrum_since_mjd,
        "detected": window.detected_since_mjd,
        "now": window.mjd_now,
        "zp": ALERT_FLUX_ZERO_POINT,
        "snr": LATEST_MIN_SNR,
    }
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(query, params).fetchall()
    return [
        Wanted(
            object_id=row[0],
            ra=row[1],
            dec=row[2],
            requester=row[3],
            priority=row[4],
            latest={
                band: (mjd, mag) for band, mjd, mag in zip(row[5], row[6], row[7], strict=True)
            },
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class KnownSpectraFilter:
    object_ids: list[int] | None = None
    facility: str | None = None
    classid: int | None = None
    z_min: float | None = None
    z_max: float | None = None
    mjd_min: float | None = None
    mjd_max: float | None = None
    since: datetime | None = None


_KNOWN_CONDITIONS = {
    "object_ids": "diaobject_id = ANY(%(object_ids)s)",
    "facility": "facility = %(facility)s",
    "classid": "classid = %(classid)s",
    "z_min": "z >= %(z_min)s",
    "z_max": "z <= %(z_max)s",
    "mjd_min": "mjd >= %(mjd_min)s",
    "mjd_max": "mjd <= %(mjd_max)s",
    "since": "inserted_at >= %(since)s",
}


def known_spectra(conn: psycopg.Connection, where: KnownSpectraFilter) -> list[Report]:
    """Reported spectra matching every filter given, in MJD order."""
    params = {name: getattr(where, name) for name in _KNOWN_CONDITIONS}
    conditions = [
        sql.SQL(condition)
        for name, condition in _KNOWN_CONDITIONS.items()
        if params[name] is not None
    ]
    query = sql.SQL(
        "SELECT diaobject_id, facility, mjd, z, classid, inserted_at FROM spectrum_info "
        "WHERE {} ORDER BY mjd, specinfo_id"
    ).format(sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true"))
    return [Report(*row) for row in conn.execute(query, params).fetchall()]

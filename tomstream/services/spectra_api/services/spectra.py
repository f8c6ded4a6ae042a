"""The spectrum cycle: ask for spectra, list what is wanted, plan, un-plan and report spectra.

Every change is one transaction that also writes its spectrum event to the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from tomstream.services.spectra_api.errors import not_found
from tomstream.services.spectra_api.events import EventType, emit
from tomstream.services.spectra_api.models import (
    AskForSpectrumRequest,
    KnownSpectrumInfoRequest,
    PlanSpectrumRequest,
    RemoveSpectrumPlanRequest,
    ReportSpectrumInfoRequest,
    SpectraWantedRequest,
)
from tomstream.services.spectra_api.responses import desc_time
from tomstream.services.spectra_api.services.mjd import datetime_of, mjd_of
from tomstream.services.spectra_api.storage import spectra
from tomstream.services.spectra_api.storage.accounts import Principal
from tomstream.services.spectra_api.storage.spectra import KnownSpectraFilter, Wanted, WantedWindow

T = TypeVar("T")
REQUESTED_DAYS_DEFAULT = 14.0
DETECTED_DAYS_DEFAULT = 14.0


def _require_objects(conn: psycopg.Connection, object_ids: list[int]) -> None:
    missing = spectra.missing_objects(conn, object_ids)
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        raise not_found(f"unknown objectid: {shown}" + (" …" if len(missing) > 20 else ""))


def ask(conn: psycopg.Connection, request: AskForSpectrumRequest, user: Principal) -> int:
    # Asking twice for one object in one request: the last priority given wins.
    priorities = dict(zip(request.objectids, request.priorities, strict=True))
    with conn.transaction():
        _require_objects(conn, list(priorities))
        count = spectra.want(conn, request.requester, priorities, user.user_id)
        for object_id, priority in priorities.items():
            emit(
                conn,
                EventType.WANTED,
                object_id,
                user.username,
                requester=request.requester,
                priority=priority,
            )
    return count


def window(request: SpectraWantedRequest, now: datetime) -> WantedWindow:
    """The request's windows as absolute times: relative to ``mjd_now`` if given, else to
    ``now`` (the wall clock)."""
    if request.mjd_now is not None:
        now = datetime_of(request.mjd_now)
    current_mjd = mjd_of(now)
    if request.detected_since_mjd is not None:
        detected_since = request.detected_since_mjd
    else:
        days = request.detected_in_last_days
        detected_since = current_mjd - (DETECTED_DAYS_DEFAULT if days is None else days)
    claim_days, spectrum_days = request.not_claimed_in_last_days, request.no_spectra_in_last_days
    return WantedWindow(
        requested_since=request.requested_since or now - timedelta(days=REQUESTED_DAYS_DEFAULT),
        claimed_since=now - timedelta(days=claim_days) if claim_days > 0 else None,
        spectrum_since_mjd=current_mjd - spectrum_days if spectrum_days > 0 else None,
        detected_since_mjd=detected_since,
        mjd_now=request.mjd_now,
    )


def bright_enough(entry: Wanted, lim_mag: float, band: str | None) -> bool:
    """Whether the latest magnitude in ``band`` (any band if None) is at most ``lim_mag``."""
    return any(
        mag <= lim_mag
        for name, (_, mag) in entry.latest.items()
        if band is None or name.lower() == band.lower()
    )


def wanted(conn: psycopg.Connection, request: SpectraWantedRequest) -> list[dict[str, Any]]:
    entries = spectra.wanted(conn, window(request, datetime.now(UTC)))
    if request.lim_mag is not None:
        entries = [e for e in entries if bright_enough(e, request.lim_mag, request.lim_mag_band)]
    return [
        {
            "oid": e.object_id,
            "ra": e.ra,
            "dec": e.dec,
            "req": e.requester,
            "prio": e.priority,
            "latest": {band: {"mjd": mjd, "mag": mag} for band, (mjd, mag) in e.latest.items()},
        }
        for e in entries
    ]


def _change(
    conn: psycopg.Connection,
    object_id: int,
    user: Principal,
    store: Callable[[], T],
    event: EventType,
    **event_fields: Any,
) -> T:
    """One change of the spectrum cycle about a known object: the change and its event commit
    together, or neither does."""
    with conn.transaction():
        _require_objects(conn, [object_id])
        stored = store()
        emit(conn, event, object_id, user.username, **event_fields)
    return stored


def plan(conn: psycopg.Connection, request: PlanSpectrumRequest, user: Principal) -> dict[str, Any]:
    stored = _change(
        conn,
        request.objectid,
        user,
        lambda: spectra.plan(
            conn, request.objectid, request.facility, request.plantime, request.comment,
            user.user_id,
        ),
        EventType.PLANNED,
        facility=request.facility,
        plannedTime=request.plantime,
        comment=request.comment,
    )  # fmt: skip
    return {
        "status": "ok",
        "objectid": stored.object_id,
        "facility": stored.facility,
        "created_at": desc_time(stored.created_at),
        "plantime": desc_time(stored.plantime),
        "comment": stored.comment,
    }


def remove_plan(
    conn: psycopg.Connection, request: RemoveSpectrumPlanRequest, user: Principal
) -> dict[str, Any]:
    with conn.transaction():
        deleted = spectra.remove_plan(conn, request.objectid, request.facility)
        # Only a change is announced: removing a plan that did not exist changes nothing.
        if deleted:
            emit(
                conn,
                EventType.PLAN_REMOVED,
                request.objectid,
                user.username,
                facility=request.facility,
            )
    return {
        "status": "ok",
        "facility": request.facility,
        "objectid": request.objectid,
        "n_deleted": deleted,
    }


def report(
    conn: psycopg.Connection, request: ReportSpectrumInfoRequest, user: Principal
) -> dict[str, Any]:
    stored = _change(
        conn,
        request.objectid,
        user,
        lambda: spectra.report(
            conn, request.objectid, request.facility, request.mjd, request.z, request.classid,
            user.user_id,
        ),
        EventType.REPORTED,
        facility=request.facility,
        mjd=request.mjd,
        redshift=request.z,
        classId=request.classid,
    )  # fmt: skip
    return {
        "status": "ok",
        "objectid": stored.object_id,
        "facility": stored.facility,
        "inserted_at": desc_time(stored.inserted_at),
        "mjd": stored.mjd,
        "z": stored.z,
        "classid": stored.classid,
    }


def known(conn: psycopg.Connection, request: KnownSpectrumInfoRequest) -> list[dict[str, Any]]:
    ids = request.objectid
    where = KnownSpectraFilter(
        object_ids=None if ids is None else (ids if isinstance(ids, list) else [ids]),
        facility=request.facility,
        classid=request.classid,
        z_min=request.z_min,
        z_max=request.z_max,
        mjd_min=request.mjd_min,
        mjd_max=request.mjd_max,
        since=request.since,
    )
    return [
        {
            "objectid": r.object_id,
            "facility": r.facility,
            "mjd": r.mjd,
            "z": r.z,
            "classid": r.classid,
            "report_time": desc_time(r.inserted_at),
        }
        for r in spectra.known_spectra(conn, where)
    ]

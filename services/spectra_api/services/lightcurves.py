"""``elasticc2/ltcv`` and ``elasticc2/gethottransients``: light curves in the DESC TOM's three
return formats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from services.spectra_api.context import ApiContext
from services.spectra_api.errors import bad_request, not_found
from services.spectra_api.models import HotTransientsRequest, LightCurveOptions, LtcvRequest
from services.spectra_api.services.mjd import now_mjd
from services.spectra_api.storage import photometry
from services.spectra_api.storage.photometry import EMPTY_CURVE, Curve, StoredObject

ZERO_POINT = 31.4  # the stored fluxes are nJy (the DESC TOM said 27.5, which was wrong)
UNKNOWN = -99  # the DESC TOM's value for "no redshift / no class known"
HOT_DAYS_DEFAULT = 30.0


def ltcv(context: ApiContext, request: LtcvRequest) -> Any:
    ids = request.object_ids
    if len(ids) > context.api.max_objects:
        raise bad_request(f"at most {context.api.max_objects} objects per request, got {len(ids)}")
    with context.connection() as conn:
        found, curves = _read(context, conn, ids, request)
    unknown = sorted(set(ids) - {o.object_id for o in found})
    if unknown:
        raise not_found(f"unknown objectid: {', '.join(map(str, unknown[:20]))}")
    return shape(found, curves, request.return_format, with_host=request.include_hostinfo)


def hot_transients(context: ApiContext, request: HotTransientsRequest) -> Any:
    """Objects with at least one detection in the window, with their light curves."""
    if request.detected_since_mjd is not None:
        since = request.detected_since_mjd
    else:
        now = request.mjd_now if request.mjd_now is not None else now_mjd()
        days = request.detected_in_last_days
        since = now - (HOT_DAYS_DEFAULT if days is None else days)
    with context.connection() as conn:
        ids = photometry.detected_objects(conn, since, request.mjd_now)
        found, curves = _read(context, conn, ids, request)
    return shape(found, curves, request.return_format, with_host=request.include_hostinfo)


# Below this many objects a request is quicker on one connection than spread over three.
PARALLEL_FROM = 200


def _read(
    context: ApiContext, conn: psycopg.Connection, ids: list[int], options: LightCurveOptions
) -> tuple[list[StoredObject], dict[int, Curve]]:
    """The objects and their patch light curves; the three reads run at the same time."""
    if not ids:
        return [], {}
    found, forced, detected = context.gather(
        conn,
        [
            lambda c: photometry.objects(c, ids, with_host=options.include_hostinfo),
            lambda c: photometry.points(c, "diaforcedsource", ids, options.mjd_now),
            lambda c: photometry.points(c, "diasource", ids, options.mjd_now),
        ],
        parallel=len(ids) >= PARALLEL_FROM,
    )
    return found, photometry.patched(forced, detected, ids)


def shape(
    found: Sequence[StoredObject], curves: dict[int, Curve], return_format: int, *, with_host: bool
) -> list[dict[str, Any]] | dict[str, list[Any]]:
    """The DESC TOM's formats. 0: a list of objects, each with a ``photometry`` dict of lists;
    1: the same with the four lists at the top level of each object; 2: one dict whose values
    are lists with one element per object."""
    rows = [_summary(o, with_host) for o in found]
    points = [curves.get(o.object_id, EMPTY_CURVE) for o in found]
    pairs = zip(rows, points, strict=True)
    # (The rows are new dicts: filled in place, as thousands of copies would cost.)
    if return_format == 0:
        for row, curve in pairs:
            row["photometry"] = _points(curve)
        return rows
    if return_format == 1:
        for row, curve in pairs:
            row.update(_points(curve))
        return rows
    columns: dict[str, list[Any]] = {
        "objectid": [row["objectid"] for row in rows],
        "ra": [row["ra"] for row in rows],
        "dec": [row["dec"] for row in rows],
        **{key: [getattr(curve, key) for curve in points] for key in _POINT_KEYS},
        "zp": [row["zp"] for row in rows],
        "redshift": [row["redshift"] for row in rows],
        "sncode": [row["sncode"] for row in rows],
    }
    if with_host:
        for key in photometry.HOST_PROPERTIES:
            columns[key] = [row[key] for row in rows]
    return columns


_POINT_KEYS = ("mjd", "band", "flux", "fluxerr")  # Curve's attributes, named as in the API


def _points(curve: Curve) -> dict[str, Sequence[Any]]:
    return {"mjd": curve.mjd, "band": curve.band, "flux": curve.flux, "fluxerr": curve.fluxerr}


def _summary(o: StoredObject, with_host: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "objectid": o.object_id,
        "ra": o.ra,
        "dec": o.dec,
        "zp": ZERO_POINT,
        "redshift": o.redshift if o.redshift is not None else UNKNOWN,
        "sncode": o.class_id if o.class_id is not None else UNKNOWN,
    }
    if with_host and o.host is not None:
        row.update(o.host)
    return row

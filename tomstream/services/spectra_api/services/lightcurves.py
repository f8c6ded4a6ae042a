"""``elasticc2/ltcv`` and ``elasticc2/gethottransients``: light curves in the DESC TOM's three
return formats.

A 30-day gethottransients answer holds 15,000 objects and 400,000 points: 14 MB of JSON.
- It is written as text column by column, not built as a Python object per object and per
  point: orjson writes a column of many objects at once, and each object's part is a piece of
  that text.
- The objects are read and encoded in chunks of consecutive ids: while one chunk is merged and
  encoded here, PostgreSQL reads the next (reading takes most of the time, and the machine has
  more than one core).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import psycopg

from tomstream.avro import ALERT_FLUX_ZERO_POINT
from tomstream.services.spectra_api.context import ApiContext, Reader
from tomstream.services.spectra_api.errors import bad_request, not_found
from tomstream.services.spectra_api.models import (
    HotTransientsRequest,
    LightCurveOptions,
    LtcvRequest,
)
from tomstream.services.spectra_api.services.mjd import now_mjd
from tomstream.services.spectra_api.storage import photometry
from tomstream.services.spectra_api.storage.photometry import Points, StoredObjects

UNKNOWN = -99  # the DESC TOM's value for "no redshift / no class known"
HOT_DAYS_DEFAULT = 30.0


def ltcv(context: ApiContext, request: LtcvRequest) -> orjson.Fragment:
    ids = request.object_ids
    if len(ids) > context.api.max_objects:
        raise bad_request(f"at most {context.api.max_objects} objects per request, got {len(ids)}")
    with context.connection() as conn:
        encoded = _light_curves(context, conn, ids, request)
    unknown = sorted(set(ids).difference(*(part.object_ids for part in encoded)))
    if unknown:
        raise not_found(f"unknown objectid: {', '.join(map(str, unknown[:20]))}")
    return document(encoded, request.return_format)


def hot_transients(context: ApiContext, request: HotTransientsRequest) -> orjson.Fragment:
    """Objects with at least one detection in the window, with their light curves."""
    if request.detected_since_mjd is not None:
        since = request.detected_since_mjd
    else:
        now = request.mjd_now if request.mjd_now is not None else now_mjd()
        days = request.detected_in_last_days
        since = now - (HOT_DAYS_DEFAULT if days is None else days)
    with context.connection() as conn:
        ids = photometry.detected_objects(conn, since, request.mjd_now)
        encoded = _light_curves(context, conn, ids, request)
    return document(encoded, request.return_format)


# Below this many objects a request is quicker on one connection than spread over three.
PARALLEL_FROM = 200
# Objects per chunk at most: a 30-day request (15,000 objects) is read in four.
CHUNK_OBJECTS = 4000


@dataclass(frozen=True, slots=True)
class Encoded:
    """Some objects' share of the answer: their ids, and the JSON text of their elements of
    each list of the answer, comma-separated. Formats 0 and 1 have one list (key ""), the
    objects; format 2 has a list per key."""

    object_ids: list[int]
    lists: dict[str, bytes]


def _light_curves(
    context: ApiContext, conn: psycopg.Connection, ids: list[int], options: LightCurveOptions
) -> list[Encoded]:
    """The objects among ``ids`` with their patch light curves, encoded, in chunks of
    consecutive ids: the three reads of a chunk run at the same time, and the next chunk is
    read while this one is merged and encoded."""
    size = math.ceil(len(ids) / math.ceil(len(ids) / CHUNK_OBJECTS)) if ids else 1  # equal
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)] or [[]]
    return context.gather_each(
        conn,
        [_readers(chunk, options) for chunk in chunks],
        lambda results: encode(*results, options),
        parallel=len(ids) >= PARALLEL_FROM,
    )


def _readers(ids: list[int], options: LightCurveOptions) -> list[Reader]:
    id_array = photometry.id_array(ids)
    return [
        lambda c: photometry.objects(c, id_array, with_host=options.include_hostinfo),
        lambda c: photometry.points(c, "diaforcedsource", id_array, options.mjd_now),
        lambda c: photometry.points(c, "diasource", id_array, options.mjd_now),
    ]


def document(encoded: Sequence[Encoded], return_format: int) -> orjson.Fragment:
    """The ``diaobject`` value of the answer, from its chunks, as JSON text. 0: a list of
    objects, each with a ``photometry`` dict of lists; 1: the same with the four lists at the
    top level of each object; 2: one dict whose values are lists with one element per object.
    The text is what orjson writes for the same values as Python objects."""
    if return_format == 2:
        members = (
            orjson.dumps(key) + b":" + _json_list(part.lists[key] for part in encoded)
            for key in encoded[0].lists
        )
        return orjson.Fragment(b"{" + b",".join(members) + b"}")
    return orjson.Fragment(_json_list(part.lists[""] for part in encoded))


def _json_list(texts: Iterable[bytes]) -> bytes:
    """A JSON list of the elements in ``texts`` (each some elements, comma-separated, or
    nothing), joined in one copy: the text can be megabytes."""
    pieces = [b"["]
    for text in texts:
        if text:
            pieces += [text, b","]
    if len(pieces) > 1:
        pieces.pop()
    return b"".join([*pieces, b"]"])


# What each object is written from: constant text, or a list with each object's own text.
Parts = list[bytes | list[bytes]]


def encode(
    found: StoredObjects, forced: Points, detected: Points, options: LightCurveOptions
) -> Encoded:
    """These objects' share of the answer, with their patch light curves (see
    :class:`Encoded`); :func:`document` joins the shares."""
    curves = photometry.patched(forced, detected, found.object_id)
    starts, ends = curves.bounds(found.object_id)
    points = {
        "mjd": _number_runs(curves.mjd, starts, ends),
        "band": _band_runs(curves.band, starts, ends),
        "flux": _number_runs(curves.flux, starts, ends),
        "fluxerr": _number_runs(curves.fluxerr, starts, ends),
    }
    count = len(found.object_id)
    redshift = [UNKNOWN if z is None else z for z in found.redshift]
    sncode = [UNKNOWN if c is None else c for c in found.class_id]
    hosts = found.host if options.include_hostinfo and found.host is not None else None
    if options.return_format == 2:
        columns = {
            "objectid": _elements(found.object_id),
            "ra": _elements(found.ra),
            "dec": _elements(found.dec),
            **{
                key: b"[" + b"],[".join(runs) + b"]" if runs else b""
                for key, runs in points.items()
            },
            "zp": _elements([ALERT_FLUX_ZERO_POINT] * count),
            "redshift": _elements(redshift),
            "sncode": _elements(sncode),
        }
        if hosts is not None:
            for key in photometry.HOST_PROPERTIES:
                columns[key] = _elements([host[key] for host in hosts])
        return Encoded(found.object_id, columns)
    summary = _members(
        {
            "objectid": _numbers(found.object_id),
            "ra": _numbers(found.ra),
            "dec": _numbers(found.dec),
            "zp": orjson.dumps(ALERT_FLUX_ZERO_POINT),
            "redshift": _numbers(redshift),
            "sncode": _numbers(sncode),
        }
    )
    host_members: Parts = [[b"," + orjson.dumps(host)[1:-1] for host in hosts]] if hosts else []
    photometry_members = _members(points, lists=True)
    if options.return_format == 0:
        parts = [b"{", *summary, *host_members, b',"photometry":{', *photometry_members, b"}}"]
    else:
        parts = [b"{", *summary, *host_members, b",", *photometry_members, b"}"]
    return Encoded(found.object_id, {"": _objects(parts)})


def _members(values: dict[str, bytes | list[bytes]], *, lists: bool = False) -> Parts:
    """The comma-separated members ``"key":value`` of an object; with ``lists``, each value
    is the inside of a list."""
    opening, closing = (b"[", b"]") if lists else (b"", b"")
    parts: Parts = []
    for index, (key, value) in enumerate(values.items()):
        comma = b"," if index else b""
        parts += [comma + orjson.dumps(key) + b":" + opening, value, closing]
    return parts


def _objects(parts: Parts) -> bytes:
    """Objects, each the concatenation of ``parts``, comma-separated: one ``bytes %`` per
    object of a template whose slots are the lists."""
    template = b"".join(
        part.replace(b"%", b"%%") if isinstance(part, bytes) else b"%b" for part in parts
    )
    columns = [part for part in parts if isinstance(part, list)]
    return b",".join(template % values for values in zip(*columns, strict=True))


def _elements(values: Sequence[Any]) -> bytes:
    """The JSON text of a list's elements, comma-separated."""
    return orjson.dumps(values)[1:-1]


def _numbers(values: Sequence[Any]) -> list[bytes]:
    """The JSON text of each number (one orjson call: a number holds no comma to split at)."""
    return _elements(values).split(b",") if values else []


def _number_runs(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """The JSON text of each run ``values[start:end]``, without brackets (NaN: null)."""
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    # A number holds no comma: element i of "[e0,e1,...]" ends at comma i (the last at "]").
    commas = np.flatnonzero(np.frombuffer(text, np.uint8) == ord(","))
    return _split_runs(text, np.append(commas, len(text) - 1), starts, ends)


# The JSON text of each band (a letter, as one byte) and its length.
_BAND_JSON = np.array([orjson.dumps(chr(code)) for code in range(256)], dtype=object)
_BAND_JSON_LENGTH = np.array([len(text) for text in _BAND_JSON])


def _band_runs(bands: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """The JSON text of each run of band names ``bands[start:end]``, without brackets."""
    text = b"[" + b",".join(_BAND_JSON[bands].tolist()) + b"]"
    # Element i ends after "[" and the elements up to it, each followed by its comma.
    return _split_runs(text, np.cumsum(_BAND_JSON_LENGTH[bands] + 1), starts, ends)


def _split_runs(
    text: bytes, element_end: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> list[bytes]:
    """Cut the JSON list ``text``, whose element i ends at ``element_end[i]`` (its comma, or
    the closing bracket), into the runs of elements ``start:end``, which follow one another
    and cover the list: the brackets and the commas between runs become NUL bytes (which JSON
    text never holds), and one split cuts there."""
    filled = ends > starts
    marked = bytearray(text)
    cuts = np.frombuffer(marked, np.uint8)
    cuts[element_end[ends[filled] - 1]] = 0
    cuts[[0, -1]] = 0
    runs = bytes(marked).split(b"\0")[1:-1]
    if len(runs) == len(starts):
        return runs
    pieces = iter(runs)  # objects without points get an empty run
    return [next(pieces) if has_points else b"" for has_points in filled.tolist()]

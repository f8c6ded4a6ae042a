"""The spectra API's logic that needs no server: passwords, shapes, windows, events."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from psycopg_pool import PoolTimeout

from tomstream import avro
from tomstream.config import Settings
from tomstream.services.spectra_api import auth, events
from tomstream.services.spectra_api.config import ApiSettings
from tomstream.services.spectra_api.context import ApiContext
from tomstream.services.spectra_api.errors import describe_validation_errors
from tomstream.services.spectra_api.models import LightCurveOptions, SpectraWantedRequest
from tomstream.services.spectra_api.responses import Json, desc_time
from tomstream.services.spectra_api.services import lightcurves, spectra
from tomstream.services.spectra_api.services.mjd import datetime_of, mjd_of
from tomstream.services.spectra_api.storage import photometry
from tomstream.services.spectra_api.storage.spectra import Wanted


def test_passwords_are_salted_scrypt_hashes() -> None:
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert stored != auth.hash_password("correct horse")  # a new salt each time
    assert auth.verify_password("correct horse", stored)
    assert not auth.verify_password("correct hors", stored)
    assert not auth.verify_password("correct horse", None)
    assert not auth.verify_password("x", "md5$abc")
    assert not auth.verify_password("x", "scrypt$1$2$3$aa$bb")  # invalid cost: refused, no error


def test_tokens_are_random_and_stored_as_digests() -> None:
    first, second = auth.new_token(), auth.new_token()
    assert first != second
    assert first.startswith(auth.TOKEN_PREFIX)
    assert len(auth.digest(first)) == 32
    assert auth.digest(first) == auth.digest(first)
    assert auth.same_secret("abc", "abc")
    assert not auth.same_secret("abc", "abd")
    assert not auth.same_secret(None, None)
    assert not auth.same_secret("", "")


def points(rows: list[tuple[int, float, str, float, float]]) -> photometry.Points:
    return photometry.Points(
        object_id=np.array([r[0] for r in rows], dtype=np.int64),
        mjd=np.array([r[1] for r in rows], dtype=np.float64),
        band=np.array([ord(r[2]) for r in rows], dtype=np.uint8),
        flux=np.array([r[3] for r in rows], dtype=np.float32),
        fluxerr=np.array([r[4] for r in rows], dtype=np.float32),
    )


HOST = dict.fromkeys(photometry.HOST_PROPERTIES, 20.5)
OBJECTS = photometry.StoredObjects(
    object_id=[1, 2], ra=[10.0, 11.0], dec=[-5.0, -6.0], redshift=[0.3, None],
    class_id=[2222, None], host=[HOST, HOST],
)  # fmt: skip
FORCED = points([(1, 60000.0, "g", 100.0, 5.0), (1, 60001.5, "r", 250.0, 6.0)])


def answer(return_format: int, *, with_host: bool) -> Any:
    """The ``diaobject`` value of ltcv / gethottransients for OBJECTS and FORCED."""
    options = LightCurveOptions(return_format=return_format, include_hostinfo=with_host)
    encoded = lightcurves.encode(OBJECTS, FORCED, photometry.EMPTY_POINTS, options)
    return orjson.loads(orjson.dumps(lightcurves.document([encoded], return_format)))


def test_format_0_nests_photometry_and_reports_unknowns_as_minus_99() -> None:
    shaped = answer(0, with_host=False)
    assert shaped[0] == {
        "objectid": 1,
        "ra": 10.0,
        "dec": -5.0,
        "zp": 31.4,
        "redshift": 0.3,
        "sncode": 2222,
        "photometry": {
            "mjd": [60000.0, 60001.5],
            "band": ["g", "r"],
            "flux": [100.0, 250.0],
            "fluxerr": [5.0, 6.0],
        },
    }
    assert (shaped[1]["redshift"], shaped[1]["sncode"]) == (-99, -99)
    assert shaped[1]["photometry"] == {"mjd": [], "band": [], "flux": [], "fluxerr": []}


def test_format_1_is_flat_and_format_2_is_parallel_lists() -> None:
    flat = answer(1, with_host=True)
    nested = answer(0, with_host=True)
    for f, n in zip(flat, nested, strict=True):
        assert {k: v for k, v in f.items() if k not in n["photometry"]} == {
            k: v for k, v in n.items() if k != "photometry"
        }
        assert {k: f[k] for k in n["photometry"]} == n["photometry"]
        assert f["hostgal_mag_y"] == 20.5
    columns = answer(2, with_host=True)
    assert columns["objectid"] == [1, 2]
    assert columns["mjd"] == [[60000.0, 60001.5], []]
    assert columns["sncode"] == [2222, -99]
    assert columns["hostgal_snsep"] == [20.5, 20.5]
    assert all(len(values) == 2 for values in columns.values())


def reference_answer(
    found: photometry.StoredObjects, curves: photometry.Curves, return_format: int, with_host: bool
) -> bytes:
    """The answer built the plain way, as Python objects encoded by orjson at once."""
    rows = []
    for index, object_id in enumerate(found.object_id):
        mine = curves.object_id == object_id
        row: dict[str, Any] = {
            "objectid": object_id,
            "ra": found.ra[index],
            "dec": found.dec[index],
            "zp": 31.4,
            "redshift": -99 if found.redshift[index] is None else found.redshift[index],
            "sncode": -99 if found.class_id[index] is None else found.class_id[index],
        }
        if with_host and found.host is not None:
            row.update(found.host[index])
        curve = {
            "mjd": curves.mjd[mine],
            "band": [chr(code) for code in curves.band[mine]],
            "flux": curves.flux[mine],
            "fluxerr": curves.fluxerr[mine],
        }
        rows.append({**row, "photometry": curve} if return_format == 0 else {**row, **curve})
    if return_format == 2:
        keys = ["objectid", "ra", "dec", "mjd", "band", "flux", "fluxerr", "zp", "redshift"]
        keys += ["sncode", *(photometry.HOST_PROPERTIES if with_host else ())]
        return orjson.dumps(
            {key: [row[key] for row in rows] for key in keys}, option=orjson.OPT_SERIALIZE_NUMPY
        )
    return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize("return_format", [0, 1, 2])
@pytest.mark.parametrize("with_host", [False, True])
def test_the_answer_is_written_as_orjson_writes_it_whatever_the_chunks(
    return_format: int, with_host: bool
) -> None:
    """The text is cut from whole columns and joined from chunks: byte for byte the same as
    orjson's for the values, with numbers of every shape, objects without points, odd bands."""
    rng = np.random.default_rng(7)
    ids = list(range(100, 160))
    rows = [
        (object_id, float(rng.uniform(6e4, 6.4e4)), str(rng.choice(list('ugrizY",\\'))),
         float(value), float(rng.uniform(0, 1e6)))
        for object_id in ids if object_id % 7  # every seventh object has no point
        for value in rng.choice([0.0, -0.0, 1e-9, -3.5e12, 123.456, np.nan, np.inf], 4)
    ]  # fmt: skip
    forced = points(rows[::2])
    detected = points(rows[1::2])
    found = photometry.StoredObjects(
        object_id=ids,
        ra=[float(x) for x in rng.uniform(0, 360, len(ids))],
        dec=[-1e-7 * i for i in range(len(ids))],
        redshift=[None if i % 3 else 0.1 * i for i in range(len(ids))],
        class_id=[None if i % 4 else 2222 for i in range(len(ids))],
        host=[{**HOST, "hostgal_snsep": None if i % 2 else "n,a"} for i in range(len(ids))],
    )
    options = LightCurveOptions(return_format=return_format, include_hostinfo=with_host)

    def share(start: int, end: int) -> lightcurves.Encoded:
        part = photometry.StoredObjects(
            *(getattr(found, name)[start:end] for name in ("object_id", "ra", "dec")),
            redshift=found.redshift[start:end], class_id=found.class_id[start:end],
            host=found.host[start:end] if found.host else None,
        )  # fmt: skip
        return lightcurves.encode(part, forced, detected, options)

    expected = reference_answer(
        found, photometry.patched(forced, detected, ids), return_format, with_host
    )
    for shares in ([share(0, 60)], [share(0, 25), share(25, 26), share(26, 60)]):
        assert orjson.dumps(lightcurves.document(shares, return_format)) == expected


def test_mjd_conversions() -> None:
    assert mjd_of(datetime(1970, 1, 1, tzinfo=UTC)) == 40587.0
    assert mjd_of(datetime(2000, 1, 1, 12, tzinfo=UTC)) == 51544.5
    assert datetime_of(51544.5) == datetime(2000, 1, 1, 12, tzinfo=UTC)


def test_wanted_windows_follow_mjd_now_or_the_clock() -> None:
    clock = datetime(2030, 6, 1, tzinfo=UTC)
    window = spectra.window(SpectraWantedRequest(), clock)
    assert window.requested_since == clock - timedelta(days=14)
    assert window.claimed_since == clock - timedelta(days=7)
    assert window.spectrum_since_mjd == pytest.approx(mjd_of(clock) - 7)
    assert window.detected_since_mjd == pytest.approx(mjd_of(clock) - 14)
    assert window.mjd_now is None
    simulated = spectra.window(
        SpectraWantedRequest(
            mjd_now=60500, detected_in_last_days=3, not_claimed_in_last_days=0,
            no_spectra_in_last_days=-1,
        ),
        clock,
    )  # fmt: skip
    assert simulated.requested_since == datetime_of(60500) - timedelta(days=14)
    assert simulated.detected_since_mjd == 60497
    assert simulated.claimed_since is None  # 0 disables the claim window
    assert simulated.spectrum_since_mjd is None
    assert simulated.mjd_now == 60500
    explicit = spectra.window(SpectraWantedRequest(detected_since_mjd=100), clock)
    assert explicit.detected_since_mjd == 100


def test_lim_mag_keeps_objects_bright_enough_in_the_band_or_any_band() -> None:
    entry = Wanted(1, 0.0, 0.0, "r", 3, {"g": (60000.0, 21.0), "Y": (60001.0, 19.0)})
    assert spectra.bright_enough(entry, 19.5, None)
    assert spectra.bright_enough(entry, 19.5, "y")  # band names compare case-insensitively
    assert not spectra.bright_enough(entry, 19.5, "g")
    assert not spectra.bright_enough(entry, 25.0, "r")  # no photometry in r: not kept
    assert spectra.bright_enough(entry, 21.0, "g")  # "at most"


def test_timestamps_are_written_as_the_desc_tom_did() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 5, 123456, tzinfo=UTC)
    assert desc_time(moment) == "2024-05-01T12:30:05.123Z"
    assert desc_time(None) is None


def test_json_responses_turn_nan_into_null_and_bytes_into_base64() -> None:
    body = Json({"flux": [1.5, math.nan], "cutout": b"\x00\x01"}).body
    assert body == b'{"flux":[1.5,null],"cutout":"AAE="}'


def test_validation_messages_name_keys() -> None:
    errors = [
        {"type": "extra_forbidden", "loc": ("body", "colour"), "msg": "Extra inputs"},
        {"type": "missing", "loc": ("body", "objectid"), "msg": "Field required"},
        {"type": "value_error", "loc": ("body",), "msg": "Value error, give only one of a and b"},
        {"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error"},
    ]
    assert describe_validation_errors(errors) == (
        "unknown key 'colour'; missing key 'objectid'; give only one of a and b; "
        "the request body is not valid JSON"
    )


def test_spectrum_events_are_avro_records_of_the_project_schema() -> None:
    record = {
        "eventId": "e1",
        "eventType": events.EventType.PLANNED.value,
        "eventTime": datetime(2024, 1, 1, tzinfo=UTC),
        "diaObjectId": 42,
        "user": "alice",
        "facility": "Keck",
        "plannedTime": datetime(2024, 1, 3, tzinfo=UTC),
        "comment": "",
    }
    decoded = avro.decode(events.SCHEMA, avro.encode(events.SCHEMA, record, strict=True))
    assert decoded["eventType"] == "PLANNED"
    assert decoded["plannedTime"] == datetime(2024, 1, 3, tzinfo=UTC)
    assert decoded["requester"] is None
    with pytest.raises((ValueError, TypeError)):
        avro.encode(events.SCHEMA, {**record, "colour": "red"}, strict=True)


def test_the_patch_light_curve_adds_detections_only_at_epochs_without_forced_points() -> None:
    forced = points([(7, 60001.0, "r", 10.0, 1.0), (7, 60000.0, "g", 5.0, 1.0),
                     (9, 60000.5, "i", 3.0, 1.0), (11, 60000.0, "u", 1.0, 1.0)])  # fmt: skip
    detected = points([
        (7, 60001.0, "r", 11.0, 1.0),  # the epoch of a forced point: the forced point wins
        (7, 60003.0, "r", 20.0, 1.0),  # no forced point yet: patched in
        (7, 60000.0, "r", 8.0, 1.0),  # same time, another band: another epoch
        (8, 60002.0, "z", 4.0, 1.0),  # an object with detections only
    ])  # fmt: skip
    curves = photometry.patched(forced, detected, [7, 8, 9, 10])  # 11: not asked for
    assert list(curves.object_id) == [7, 7, 7, 7, 8, 9]
    starts, ends = curves.bounds([7, 8, 9, 10])
    assert (list(starts), list(ends)) == ([0, 4, 5, 6], [4, 5, 6, 6])  # 10 has no point
    assert list(curves.mjd[:4]) == [60000.0, 60000.0, 60001.0, 60003.0]
    assert bytes(curves.band[:4]) == b"grrr"
    assert list(curves.flux[:4]) == [5.0, 8.0, 10.0, 20.0]
    nothing = photometry.patched(photometry.EMPTY_POINTS, photometry.EMPTY_POINTS, [1])
    assert len(nothing.mjd) == 0


class NoSpareConnections:
    """A pool with no connection free: gather runs every reader on the caller's connection."""

    def getconn(self, timeout: float) -> None:
        raise PoolTimeout("none free")


def test_gather_each_reads_the_next_batch_while_this_one_is_consumed() -> None:
    context = ApiContext(Settings(), ApiSettings(), NoSpareConnections(), None)  # type: ignore[arg-type]
    conn: Any = object()
    second_read = threading.Event()

    def read_second(_: Any) -> str:
        second_read.set()
        return "b"

    def consume(results: list[Any]) -> str:
        if results == ["a", "a2"]:
            assert second_read.wait(5), "the second batch was not read in the meantime"
        return "+".join(results)

    batches = [[lambda _: "a", lambda _: "a2"], [read_second], [lambda _: "c"]]
    assert context.gather_each(conn, batches, consume) == ["a+a2", "b", "c"]
    assert context.gather_each(conn, [], consume) == []

    finished = threading.Event()

    def slow_read(_: Any) -> None:
        time.sleep(0.2)
        finished.set()

    def failing(_: list[Any]) -> None:
        raise RuntimeError("encoding failed")

    with pytest.raises(RuntimeError):
        context.gather_each(conn, [[lambda _: None], [slow_read]], failing)
    assert finished.is_set()  # conn was not handed back while a read still used it

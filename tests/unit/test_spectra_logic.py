"""The spectra API's logic that needs no server: passwords, shapes, windows, events."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.spectra_api import auth, events
from services.spectra_api.errors import describe_validation_errors
from services.spectra_api.models import SpectraWantedRequest
from services.spectra_api.responses import Json, desc_time
from services.spectra_api.services import lightcurves, spectra
from services.spectra_api.services.mjd import datetime_of, mjd_of
from services.spectra_api.storage import photometry
from services.spectra_api.storage.photometry import Curve, StoredObject
from services.spectra_api.storage.spectra import Wanted
from tomstream import avro


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


HOST = dict.fromkeys(photometry.HOST_PROPERTIES, 20.5)
OBJECTS = [
    StoredObject(1, 10.0, -5.0, 0.3, 2222, HOST),
    StoredObject(2, 11.0, -6.0, None, None, HOST),
]
CURVES = {1: Curve([60000.0, 60001.5], ["g", "r"], [100.0, 250.0], [5.0, 6.0])}


def test_format_0_nests_photometry_and_reports_unknowns_as_minus_99() -> None:
    shaped = lightcurves.shape(OBJECTS, CURVES, 0, with_host=False)
    assert isinstance(shaped, list)
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
    flat = lightcurves.shape(OBJECTS, CURVES, 1, with_host=True)
    nested = lightcurves.shape(OBJECTS, CURVES, 0, with_host=True)
    assert isinstance(flat, list) and isinstance(nested, list)
    for f, n in zip(flat, nested, strict=True):
        assert {k: v for k, v in f.items() if k not in n["photometry"]} == {
            k: v for k, v in n.items() if k != "photometry"
        }
        assert {k: f[k] for k in n["photometry"]} == n["photometry"]
        assert f["hostgal_mag_y"] == 20.5
    columns = lightcurves.shape(OBJECTS, CURVES, 2, with_host=True)
    assert isinstance(columns, dict)
    assert columns["objectid"] == [1, 2]
    assert columns["mjd"] == [[60000.0, 60001.5], []]
    assert columns["sncode"] == [2222, -99]
    assert columns["hostgal_snsep"] == [20.5, 20.5]
    assert all(len(values) == 2 for values in columns.values())


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


def points(rows: list[tuple[int, float, str, float, float]]) -> photometry.Points:
    return photometry.Points(
        object_id=np.array([r[0] for r in rows], dtype=np.int64),
        mjd=np.array([r[1] for r in rows]),
        band=np.array([ord(r[2]) for r in rows], dtype=np.uint8),
        flux=np.array([r[3] for r in rows], dtype=np.float32),
        fluxerr=np.array([r[4] for r in rows], dtype=np.float32),
    )


def test_the_patch_light_curve_adds_detections_only_at_epochs_without_forced_points() -> None:
    forced = points([(7, 60001.0, "r", 10.0, 1.0), (7, 60000.0, "g", 5.0, 1.0),
                     (9, 60000.5, "i", 3.0, 1.0)])  # fmt: skip
    detected = points([
        (7, 60001.0, "r", 11.0, 1.0),  # the epoch of a forced point: the forced point wins
        (7, 60003.0, "r", 20.0, 1.0),  # no forced point yet: patched in
        (7, 60000.0, "r", 8.0, 1.0),  # same time, another band: another epoch
        (8, 60002.0, "z", 4.0, 1.0),  # an object with detections only
    ])  # fmt: skip
    curves = photometry.patched(forced, detected, [7, 8, 9, 10])
    assert set(curves) == {7, 8, 9}  # 10 has no point at all
    seven = curves[7]
    assert list(seven.mjd) == [60000.0, 60000.0, 60001.0, 60003.0]
    assert seven.band == ["g", "r", "r", "r"]
    assert list(seven.flux) == [5.0, 8.0, 10.0, 20.0]
    assert list(curves[8].band) == ["z"]
    assert photometry.patched(photometry.EMPTY_POINTS, photometry.EMPTY_POINTS, [1]) == {}

"""The spectra API on data made by the real alert cycle, through the DESC client's login flow.

The ELAsTiCC2 sample goes through ``sim send --through-mjd 60578`` → ingest / fakebroker /
broker-poll; then ``tomstream api`` serves it on a free port and ``tomstream.client.TomClient``
(the DESC ``tom_client.py`` flow) drives the DESC TOM's spectrum-cycle test, with every value
checked against what is stored. Last, schemathesis fuzzes every operation of ``/openapi.json``.
"""

from __future__ import annotations

import json
import math
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
import requests
import schemathesis
from confluent_kafka import Consumer
from conftest import SHARED, Isolated, missing_reference
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tomstream import avro
from tomstream.client import TomClient, wait_until_ready
from tomstream.config import Settings
from tomstream.services.spectra_api.main import create_app

pytestmark = pytest.mark.integration

TOMSTREAM = [sys.executable, "-m", "tomstream"]
SAMPLE = SHARED / "reference" / "samples" / "elasticc2_snana" / "elasticc2_alert_test_data.tar.bz2"
ZP = 31.4
MJD0 = datetime(1858, 11, 17, tzinfo=UTC)


def tomstream(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*TOMSTREAM, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"tomstream {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.postgres_dsn) as conn:
        return conn.execute(sql, params).fetchall()


def mjd_time(mjd: float) -> datetime:
    return MJD0 + timedelta(days=mjd)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def deployment(
    isolated: Callable[[str], Isolated], tmp_path_factory: pytest.TempPathFactory
) -> Isolated:
    """A deployment holding what the alert cycle stored from the sample through MJD 60578."""
    if not SAMPLE.is_file():
        missing_reference(f"ELAsTiCC2 sample not found: {SAMPLE}")
    deployment = isolated("spec")
    env = deployment.env
    logs = tmp_path_factory.mktemp("spectra-cycle")
    tomstream(env, "sim", "load", str(SAMPLE))
    tomstream(env, "sim", "send", "--through-mjd", "60578")
    procs = {}
    for name in ("ingest", "fakebroker", "broker-poll"):
        log = (logs / f"{name}.log").open("ab")
        procs[name] = subprocess.Popen(
            [*TOMSTREAM, name, "--exit-on-idle", "8"], env=env, stdout=log, stderr=log
        )
    for name, proc in procs.items():
        assert proc.wait(300) == 0, (logs / f"{name}.log").read_text()[-3000:]
    counts = json.loads(tomstream(env, "stats", "--json"))
    assert (counts["objects"], counts["sources"], counts["broker_messages"]) == (102, 545, 1090)
    return deployment


@dataclass(frozen=True)
class Users:
    name: str
    password_file: Path
    token: str
    broker_token: str


@pytest.fixture(scope="module")
def users(deployment: Isolated, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """Made with the CLI: a user with a password (file), and a broker with the broker role."""
    env = deployment.env
    secret = tmp_path_factory.mktemp("secrets") / "tests_passwd"
    secret.write_text(f"{uuid.uuid4().hex}\n")
    assert "created user tests" in tomstream(
        env, "users", "add", "tests", "--password-file", str(secret)
    )
    assert "updated user tests" in tomstream(
        env, "users", "add", "tests", "--password-file", str(secret)
    )
    tomstream(env, "users", "add", "apibroker", "--role", "broker")
    hashes = query(deployment.settings, "SELECT password_hash FROM api_user ORDER BY username")
    assert hashes[0][0] is None  # the broker has no password: tokens only
    assert hashes[1][0].startswith("scrypt$") and secret.read_text().strip() not in hashes[1][0]
    return Users(
        name="tests",
        password_file=secret,
        token=tomstream(env, "users", "token", "tests").strip(),
        broker_token=tomstream(env, "users", "token", "apibroker").strip(),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    deployment: Isolated, users: Users, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``tomstream api`` as a real server process on a free port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*TOMSTREAM, "api", "--port", str(port)], env=deployment.env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
    except TimeoutError:
        proc.kill()
        pytest.fail(f"tomstream api did not start:\n{log_path.read_text()[-3000:]}")
    yield url
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then re-raises the signal it caught to exit with it.
    assert proc.wait(30) in (0, -signal.SIGTERM), log_path.read_text()[-3000:]
    assert "Traceback" not in log_path.read_text()


@pytest.fixture(scope="module")
def tom(server: str, users: Users) -> TomClient:
    return TomClient(url=server, username=users.name, passwordfile=users.password_file)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert words in body["error"]


# ------------------------------------------------------------------------------- what is stored


def stored_curve(settings: Settings, object_id: int, mjd_now: float | None = None) -> dict:
    """The patch light curve computed here, independently of the API's SQL."""
    forced = query(
        settings,
        "SELECT mjd, band, flux, flux_err FROM diaforcedsource WHERE diaobject_id = %s",
        object_id,
    )
    detected = query(
        settings,
        "SELECT mjd, band, flux, flux_err FROM diasource WHERE diaobject_id = %s",
        object_id,
    )
    epochs = {(band, mjd) for mjd, band, _, _ in forced}
    points = forced + [
        p for p in detected if not any(b == p[1] and abs(m - p[0]) < 1e-4 for b, m in epochs)
    ]
    points = sorted(p for p in points if mjd_now is None or p[0] <= mjd_now)
    return {
        "mjd": [p[0] for p in points],
        "band": [p[1] for p in points],
        "flux": [p[2] for p in points],
        "fluxerr": [p[3] for p in points],
    }


def stored_latest(
    settings: Settings, object_id: int, mjd_now: float | None = None
) -> dict[str, dict[str, float]]:
    latest: dict[str, dict[str, float]] = {}
    rows = query(
        settings,
        "SELECT mjd, band, flux, flux_err FROM diaforcedsource WHERE diaobject_id = %s "
        "ORDER BY mjd",
        object_id,
    )
    for mjd, band, flux, err in rows:
        if flux > 0 and flux > 3 * err and (mjd_now is None or mjd <= mjd_now):
            latest[band] = {"mjd": mjd, "mag": -2.5 * math.log10(flux) + ZP}
    return latest


def detected_since(settings: Settings, since: float, until: float | None = None) -> set[int]:
    rows = query(
        settings,
        "SELECT DISTINCT diaobject_id FROM diasource WHERE mjd >= %s AND mjd <= %s",
        since,
        until if until is not None else 1e9,
    )
    return {row[0] for row in rows}


def assert_curve(actual: dict, expected: dict) -> None:
    assert actual["mjd"] == expected["mjd"]
    assert actual["band"] == expected["band"]
    assert actual["flux"] == pytest.approx(expected["flux"], rel=1e-6)
    assert actual["fluxerr"] == pytest.approx(expected["fluxerr"], rel=1e-6)


def assert_latest(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for band, point in expected.items():
        assert actual[band]["mjd"] == pytest.approx(point["mjd"], abs=1e-9)
        assert actual[band]["mag"] == pytest.approx(point["mag"], abs=1e-5)


# --------------------------------------------------------------------------------------- tests


def test_login_flow_refuses_strangers_and_requires_the_csrf_token(
    server: str, users: Users, tom: TomClient
) -> None:
    with pytest.raises(RuntimeError, match="Failed to log in"):
        TomClient(url=server, username=users.name, password="not the password")
    refused(requests.post(f"{server}/elasticc2/classids"), 401, "authentication required")
    refused(
        requests.post(f"{server}/elasticc2/ltcv", json={"objectid": 6048}),
        401,
        "authentication required",
    )
    refused(
        requests.post(
            f"{server}/elasticc2/classids", headers={"Authorization": "Bearer tst_wrong"}
        ),
        401,
        "invalid token",
    )
    # A logged-in session without its CSRF token may read (GET) but not post.
    session = requests.session()
    session.cookies.update(tom._rqs.cookies)  # type: ignore[union-attr]
    assert session.get(f"{server}/elasticc2/classids").status_code == 200
    refused(session.post(f"{server}/elasticc2/classids"), 403, "CSRF")
    assert ok(tom.post("elasticc2/classids"))["2222"]["description"] == "Ia"
    bearer = {"Authorization": f"Bearer {users.token}"}
    assert ok(requests.post(f"{server}/elasticc2/classids", headers=bearer))["300"]
    # Logging out ends the session for good.
    other = TomClient(url=server, username=users.name, passwordfile=users.password_file)
    assert ok(other.post("accounts/logout/"))["status"] == "ok"
    other._rqs.headers.pop("X-CSRFToken")  # type: ignore[union-attr]
    refused(other.post("elasticc2/classids"), 401, "authentication required")


def test_ltcv_returns_the_stored_patch_light_curves_in_three_formats(
    tom: TomClient, deployment: Isolated
) -> None:
    settings = deployment.settings
    # Objects whose newest detections have no forced point yet (the patch matters for them).
    patched = [
        row[0]
        for row in query(
            settings,
            "SELECT s.diaobject_id FROM diasource s WHERE NOT EXISTS (SELECT 1 FROM "
            "diaforcedsource f WHERE f.diaforcedsource_id = s.diasource_id) GROUP BY 1 "
            "ORDER BY (SELECT count(*) FROM diaforcedsource f "
            "WHERE f.diaobject_id = s.diaobject_id) DESC, 1 LIMIT 3",
        )
    ]
    assert len(patched) == 3
    one = patched[0]  # the one with the most forced photometry
    patched.sort()
    body = ok(tom.post("elasticc2/ltcv", json={"objectids": patched[::-1]}))
    assert body["status"] == "ok"
    objects = body["diaobject"]
    assert [o["objectid"] for o in objects] == patched  # ascending object id
    for obj in objects:
        assert set(obj) == {"objectid", "ra", "dec", "zp", "redshift", "sncode", "photometry"}
        assert obj["zp"] == ZP
        assert_curve(obj["photometry"], stored_curve(settings, obj["objectid"]))
        ra, dec, z = query(
            settings,
            "SELECT ra, decl, redshift FROM diaobject WHERE diaobject_id = %s",
            obj["objectid"],
        )[0]
        assert (obj["ra"], obj["dec"]) == (ra, dec)
        assert obj["redshift"] == pytest.approx(z if z >= 0 else -99, rel=1e-6)
        assert obj["sncode"] == -99

    cut = stored_curve(settings, one)["mjd"][2]
    flat = ok(
        tom.post(
            "elasticc2/ltcv",
            json={"objectid": one, "return_format": 1, "mjd_now": cut, "include_hostinfo": True},
        )
    )
    (row,) = flat["diaobject"]
    assert_curve(row, stored_curve(settings, one, mjd_now=cut))
    assert len(row["mjd"]) == 3
    properties = query(settings, "SELECT properties FROM diaobject WHERE diaobject_id = %s", one)
    for band in "ugrizY":
        assert row[f"hostgal_mag_{band.lower()}"] == properties[0][0][f"hostgal_mag_{band}"]
        assert row[f"hostgal_magerr_{band.lower()}"] == properties[0][0][f"hostgal_magerr_{band}"]
    for key in ("hostgal_ellipticity", "hostgal_sqradius", "hostgal_snsep"):
        assert row[key] == properties[0][0][key]

    columns = ok(tom.post("elasticc2/ltcv", json={"objectids": patched, "return_format": 2}))
    columns = columns["diaobject"]
    assert columns["objectid"] == patched
    for index, object_id in enumerate(patched):
        assert_curve(
            {key: columns[key][index] for key in ("mjd", "band", "flux", "fluxerr")},
            stored_curve(settings, object_id),
        )
    assert columns["zp"] == [ZP] * 3
    # GET with the same body, as the DESC client's get() sends it.
    assert ok(tom.get("elasticc2/ltcv", json={"objectids": patched}))["diaobject"] == objects

    refused(tom.post("elasticc2/ltcv", json={"objectid": 1}), 404, "unknown objectid: 1")
    refused(tom.post("elasticc2/ltcv", json={"objectid": one, "objectids": [one]}), 400, "only one")
    refused(tom.post("elasticc2/ltcv", json={"objectid": one, "bands": "g"}), 400, "unknown key")
    refused(tom.post("elasticc2/ltcv", data="{not json"), 400, "not valid JSON")
    text = {"Content-Type": "text/plain"}
    refused(tom.post("elasticc2/ltcv", data="{}", headers=text), 400, "must be a JSON object")
    # No Content-Type at all: read as JSON, as the DESC TOM did.
    untyped = tom.post("elasticc2/ltcv", data=json.dumps({"objectids": patched}))
    assert ok(untyped)["diaobject"] == objects


def test_gethottransients_finds_the_objects_detected_in_the_window(
    tom: TomClient, deployment: Isolated
) -> None:
    settings = deployment.settings
    body = ok(tom.post("elasticc2/gethottransients", json={"detected_since_mjd": 60560}))
    sne = body["diaobject"]
    assert {s["objectid"] for s in sne} == detected_since(settings, 60560)
    assert 0 < len(sne) < 102
    assert set(sne[0]) == {"objectid", "ra", "dec", "photometry", "zp", "redshift", "sncode"}
    assert set(sne[0]["photometry"]) == {"mjd", "band", "flux", "fluxerr"}
    assert [s["objectid"] for s in sne] == sorted(s["objectid"] for s in sne)
    assert_curve(sne[0]["photometry"], stored_curve(settings, sne[0]["objectid"]))

    windowed = ok(
        tom.post(
            "elasticc2/gethottransients",
            json={"detected_in_last_days": 5, "mjd_now": 60550, "return_format": 2},
        )
    )["diaobject"]
    assert set(windowed["objectid"]) == detected_since(settings, 60545, 60550)
    assert all(m <= 60550 for mjds in windowed["mjd"] for m in mjds)

    refused(
        tom.post(
            "elasticc2/gethottransients",
            json={"detected_since_mjd": 60560, "detected_in_last_days": 3},
        ),
        400,
        "only one of detected_since_mjd and detected_in_last_days",
    )
    refused(tom.post("elasticc2/gethottransients", json={"cheat_gentypes": [10]}), 400, "unknown")


def test_the_desc_spectrum_cycle(tom: TomClient, deployment: Isolated) -> None:
    settings = deployment.settings
    all_ids = [row[0] for row in query(settings, "SELECT diaobject_id FROM diaobject ORDER BY 1")]
    objs = all_ids[:25]
    random.seed(42)
    prios = [random.randint(1, 5) for _ in objs]

    # Ask, then ask again for one object with another priority: updated, not duplicated.
    body = ok(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "tests", "objectids": objs, "priorities": prios},
        )
    )
    assert body == {"status": "ok", "message": "wanted spectra created", "num": 25}
    (first_asked,) = query(
        settings, "SELECT wanted_at FROM wanted_spectrum WHERE diaobject_id = %s", objs[3]
    )[0]
    prios[3] = 5 if prios[3] != 5 else 1
    body = ok(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "tests", "objectids": [objs[3]], "priorities": [prios[3]]},
        )
    )
    assert body["num"] == 1
    rows = query(
        settings,
        "SELECT diaobject_id, requester, priority, wanted_at FROM "
        "wanted_spectrum ORDER BY diaobject_id",
    )
    assert [(r[0], r[1], r[2]) for r in rows] == list(zip(objs, ["tests"] * 25, prios, strict=True))
    assert rows[3][3] > first_asked

    # What is wanted: everything asked for, by priority then id, with the true latest points.
    wanted = ok(tom.post("elasticc2/spectrawanted", json={"detected_since_mjd": 0}))
    assert wanted["status"] == "ok"
    wanted = wanted["wantedspectra"]
    expected_order = [o for _, o in sorted(zip((-p for p in prios), objs, strict=True))]
    assert [w["oid"] for w in wanted] == expected_order
    by_id = dict(zip(objs, prios, strict=True))
    for entry in wanted:
        assert set(entry) == {"oid", "ra", "dec", "req", "prio", "latest"}
        assert (entry["req"], entry["prio"]) == ("tests", by_id[entry["oid"]])
        assert_latest(entry["latest"], stored_latest(settings, entry["oid"]))
    # Objects with no forced point above S/N 3 yet stay listed, with an empty `latest`.
    assert 10 <= sum(bool(w["latest"]) for w in wanted) < 25

    recent = ok(tom.post("elasticc2/spectrawanted", json={"detected_since_mjd": 60560}))
    assert {w["oid"] for w in recent["wantedspectra"]} == set(objs) & detected_since(
        settings, 60560
    )

    simulated = ok(
        tom.post("elasticc2/spectrawanted", json={"mjd_now": 60540, "detected_in_last_days": 10})
    )["wantedspectra"]
    assert {w["oid"] for w in simulated} == set(objs) & detected_since(settings, 60530, 60540)
    for entry in simulated:
        assert_latest(entry["latest"], stored_latest(settings, entry["oid"], mjd_now=60540))

    r_mags = sorted(w["latest"]["r"]["mag"] for w in wanted if "r" in w["latest"])
    limit = r_mags[len(r_mags) // 2]
    bright = ok(
        tom.post(
            "elasticc2/spectrawanted",
            json={"detected_since_mjd": 0, "lim_mag": limit, "lim_mag_band": "r"},
        )
    )
    assert [w["oid"] for w in bright["wantedspectra"]] == [
        w["oid"] for w in wanted if "r" in w["latest"] and w["latest"]["r"]["mag"] <= limit
    ]

    # requested_since: only what was asked for after that moment.
    time.sleep(1)
    wanttime = datetime.now(UTC).isoformat()[0:19]
    time.sleep(1)
    newobjs = [o for o in all_ids if o not in objs][0:3]
    ok(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "tests", "objectids": newobjs, "priorities": [1, 2, 3]},
        )
    )
    since = ok(
        tom.post(
            "elasticc2/spectrawanted", json={"requested_since": wanttime, "detected_since_mjd": 0.0}
        )
    )
    assert {w["oid"] for w in since["wantedspectra"]} == set(newobjs)
    query(settings, "DELETE FROM wanted_spectrum WHERE diaobject_id = ANY(%s) RETURNING 1", newobjs)

    # Plan, re-plan, plan at a second facility, remove.
    wanted0 = next(w for w in wanted if w["latest"])
    mjd = max(point["mjd"] for point in wanted0["latest"].values())
    plantime = mjd_time(mjd + 2).isoformat()[0:23]
    planned = ok(
        tom.post(
            "elasticc2/planspectrum",
            json={
                "objectid": wanted0["oid"],
                "plantime": plantime,
                "facility": "Test Spectrumifier",
            },
        )
    )
    assert (planned["status"], planned["objectid"], planned["facility"], planned["comment"]) == (
        "ok", wanted0["oid"], "Test Spectrumifier", "",
    )  # fmt: skip
    created = parse_time(planned["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=60)
    assert abs(parse_time(planned["plantime"]) - mjd_time(mjd + 2)) < timedelta(seconds=1)

    claimed = ok(
        tom.post(
            "elasticc2/spectrawanted", json={"detected_since_mjd": 0, "not_claimed_in_last_days": 1}
        )
    )
    assert len(claimed["wantedspectra"]) == 24
    assert wanted0["oid"] not in {w["oid"] for w in claimed["wantedspectra"]}
    unclaimed = ok(
        tom.post(
            "elasticc2/spectrawanted", json={"detected_since_mjd": 0, "not_claimed_in_last_days": 0}
        )
    )
    assert len(unclaimed["wantedspectra"]) == 25

    ok(
        tom.post(
            "elasticc2/planspectrum",
            json={
                "objectid": wanted0["oid"],
                "facility": "Test Spectrumifier",
                "plantime": mjd_time(mjd + 3).isoformat(),
                "comment": "again",
            },
        )
    )
    plans = query(
        settings,
        "SELECT diaobject_id, facility, plantime, comment, created_at FROM planned_spectrum",
    )
    assert len(plans) == 1
    assert abs(plans[0][2] - mjd_time(mjd + 3)) < timedelta(seconds=1)
    assert plans[0][3] == "again"
    assert plans[0][4] > created
    ok(
        tom.post(
            "elasticc2/planspectrum",
            json={"objectid": wanted0["oid"], "facility": "Test Spectrumifier 2"},
        )
    )
    assert query(settings, "SELECT count(*) FROM planned_spectrum") == [(2,)]

    removed = ok(
        tom.post(
            "elasticc2/removespectrumplan",
            json={"objectid": wanted0["oid"], "facility": "Test Spectrumifier"},
        )
    )
    assert removed == {
        "status": "ok",
        "facility": "Test Spectrumifier",
        "objectid": wanted0["oid"],
        "n_deleted": 1,
    }
    assert query(settings, "SELECT facility FROM planned_spectrum") == [("Test Spectrumifier 2",)]
    again = ok(
        tom.post(
            "elasticc2/removespectrumplan",
            json={"objectid": wanted0["oid"], "facility": "Test Spectrumifier"},
        )
    )
    assert again["n_deleted"] == 0

    # Report: the plan of that facility and every wish for the object are done.
    reported = ok(
        tom.post(
            "elasticc2/reportspectruminfo",
            json={
                "objectid": wanted0["oid"],
                "facility": "Test Spectrumifier 2",
                "mjd": 65536.0,
                "z": 0.25,
                "classid": 2222,
            },
        )
    )
    assert {k: reported[k] for k in ("status", "objectid", "facility", "mjd", "z", "classid")} == {
        "status": "ok", "objectid": wanted0["oid"], "facility": "Test Spectrumifier 2",
        "mjd": 65536.0, "z": 0.25, "classid": 2222,
    }  # fmt: skip
    assert abs(parse_time(reported["inserted_at"]) - datetime.now(UTC)) < timedelta(seconds=60)
    assert query(settings, "SELECT count(*) FROM planned_spectrum") == [(0,)]
    left = {row[0] for row in query(settings, "SELECT diaobject_id FROM wanted_spectrum")}
    assert len(left) == 24 and wanted0["oid"] not in left
    curve = ok(tom.post("elasticc2/ltcv", json={"objectid": wanted0["oid"]}))["diaobject"][0]
    assert (curve["redshift"], curve["sncode"]) == (0.25, 2222)  # now the best known values

    others = [o for o in objs if o != wanted0["oid"]][:2]

    ok(
        tom.post(
            "elasticc2/reportspectruminfo",
            json={
                "objectid": others[0],
                "facility": "Other",
                "mjd": 60500,
                "z": "",
                "classid": 2232,
            },
        )
    )
    ok(
        tom.post(
            "elasticc2/reportspectruminfo",
            json={
                "objectid": others[1],
                "facility": "Test Spectrumifier 2",
                "mjd": 60600,
                "z": 0.5,
                "classid": None,
            },
        )
    )

    def known(**filters: Any) -> list[tuple[int, float]]:
        spectra = ok(tom.post("elasticc2/getknownspectruminfo", json=filters))["spectra"]
        for spectrum in spectra:
            assert set(spectrum) == {"objectid", "facility", "mjd", "z", "classid", "report_time"}
        return [(s["objectid"], s["mjd"]) for s in spectra]

    everything = [(others[0], 60500.0), (others[1], 60600.0), (wanted0["oid"], 65536.0)]
    assert known() == everything
    assert known(objectid=others[0]) == [everything[0]]
    assert known(objectid=[others[1], wanted0["oid"]]) == everything[1:]
    assert known(facility="Test Spectrumifier 2") == everything[1:]
    assert known(classid=2222) == [everything[2]]
    assert known(z_min=0.3) == [everything[1]]
    assert known(z_max=0.3) == [everything[2]]
    assert known(mjd_min=60550) == everything[1:]
    assert known(mjd_max=60550) == everything[:1]
    assert known(mjd_min=60550, mjd_max=61000) == [everything[1]]
    assert known(since=wanttime) == everything
    assert known(since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []

    # Client mistakes: 4xx that say what is wrong, nothing stored.
    refused(
        tom.post(
            "elasticc2/reportspectruminfo",
            json={"objectid": objs[0], "facility": "F", "mjd": 60000, "z": None, "classid": 9999},
        ),
        400,
        "not a class id",
    )
    refused(
        tom.post(
            "elasticc2/reportspectruminfo",
            json={"objectid": 1, "facility": "F", "mjd": 60000, "z": None, "classid": None},
        ),
        404,
        "unknown objectid: 1",
    )
    refused(
        tom.post("elasticc2/planspectrum", json={"objectid": 1, "facility": "F"}),
        404,
        "unknown objectid",
    )
    refused(
        tom.post("elasticc2/planspectrum", json={"objectid": objs[0]}),
        400,
        "missing key 'facility'",
    )
    refused(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "t", "objectids": objs[:2], "priorities": [1]},
        ),
        400,
        "same length",
    )
    refused(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "t", "objectids": [objs[0]], "priorities": [9]},
        ),
        400,
        "priorities.0",
    )
    refused(
        tom.post(
            "elasticc2/askforspectrum",
            json={"requester": "t", "objectids": [objs[0], 1], "priorities": [1, 1]},
        ),
        404,
        "unknown objectid: 1",
    )
    assert query(settings, "SELECT count(*) FROM spectrum_info") == [(3,)]
    assert query(settings, "SELECT count(*) FROM wanted_spectrum") == [(22,)]

    # Every change was announced on spectrum-events, once.
    expected = {"WANTED": 25 + 1 + 3, "PLANNED": 3, "PLAN_REMOVED": 1, "REPORTED": 3}
    events = read_events(settings, sum(expected.values()))
    kinds = [e["eventType"] for e in events]
    assert {kind: kinds.count(kind) for kind in expected} == expected
    report = next(e for e in events if e["eventType"] == "REPORTED" and e["classId"] == 2222)
    assert (report["diaObjectId"], report["facility"], report["redshift"], report["user"]) == (
        wanted0["oid"], "Test Spectrumifier 2", 0.25, "tests",
    )  # fmt: skip
    assert len({e["eventId"] for e in events}) == len(events)


def read_events(settings: Settings, expected: int, timeout: float = 60) -> list[dict]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic("spectrum-events")])
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(events) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                events.append(avro.decode("tomstream.spectrum.event", message.value()))
        # Anything beyond the expected would be a duplicate or a stray event.
        extra = consumer.poll(2)
        assert extra is None or extra.error() is not None
    finally:
        consumer.close()
    return events


def test_getalert_and_the_catalogs(tom: TomClient, deployment: Isolated) -> None:
    settings = deployment.settings
    alert_id, source_id, object_id = query(
        settings,
        "SELECT alert_id, diasource_id, diaobject_id FROM alert_receipt ORDER BY alert_id LIMIT 1",
    )[0]
    alert = ok(tom.post("elasticc2/getalert", json={"alertid": alert_id}))
    assert alert["alertId"] == alert_id
    assert alert["diaSource"]["diaSourceId"] == source_id
    assert alert["diaObject"]["diaObjectId"] == object_id
    assert ok(tom.post("elasticc2/getalert", json={"sourceid": source_id})) == alert
    assert ok(tom.get("elasticc2/getalert", json={"alertid": alert_id})) == alert
    refused(tom.post("elasticc2/getalert", json={"alertid": 666}), 404, "unknown alertid 666")
    refused(tom.post("elasticc2/getalert", json={"sourceid": 666}), 404, "unknown sourceid 666")
    refused(tom.post("elasticc2/getalert", json={}), 400, "give one of alertid or sourceid")

    classids = ok(tom.get("elasticc2/classids"))
    assert len(classids) == 42
    assert classids["2222"]["gentype"] == [10]
    classifiers = ok(tom.post("elasticc2/classifiers_json"))
    assert sorted(c["classifiername"] for c in classifiers.values()) == [
        "NugentClassifier", "RandomSNType",
    ]  # fmt: skip
    assert set(next(iter(classifiers.values()))) == {
        "brokername", "brokerversion", "classifiername", "classifierparams",
    }  # fmt: skip


def test_brokers_push_classifications_deduplicated_with_the_kafka_path(
    server: str, users: Users, tom: TomClient, deployment: Isolated
) -> None:
    settings = deployment.settings
    url = f"{server}/elasticc2/brokermessage/"
    broker = {"Authorization": f"Bearer {users.broker_token}"}
    # One message broker_poll stored from Kafka, as a broker would push it.
    with psycopg.connect(settings.postgres_dsn) as conn:
        row = conn.execute(
            "SELECT m.alert_id, m.diasource_id, m.class_ids, m.probabilities, c.broker_name, "
            "c.broker_version, c.classifier_name, c.classifier_params, m.elasticc_publish_time "
            "FROM broker_message m JOIN classifier c USING (classifier_id) "
            "ORDER BY m.broker_message_id LIMIT 1"
        ).fetchone()
    assert row is not None
    message = {
        "alertId": row[0],
        "diaSourceId": row[1],
        "elasticcPublishTimestamp": int(row[8].timestamp() * 1000),
        "brokerIngestTimestamp": int(time.time() * 1000),
        "brokerName": row[4],
        "brokerVersion": row[5],
        "classifierName": row[6],
        "classifierParams": row[7],
        "classifications": [
            {"classId": c, "probability": p} for c, p in zip(row[2], row[3], strict=True)
        ],
    }
    before = query(settings, "SELECT count(*) FROM broker_message")[0][0]
    refused(tom.put("elasticc2/brokermessage/", json=message), 403, "broker")
    again = requests.put(url, json=message, headers=broker)
    assert ok(again, 201) == {"brokerMessageId": -1, "num_loaded": 0}

    fresh = [
        {
            **message,
            "classifierName": "PushedClassifier",
            "brokerPublishTimestamp": 1_700_000_000_000,
        },
        {**message, "classifierName": "PushedClassifier", "alertId": row[0] + 1},
    ]
    pushed = requests.put(url, json=fresh, headers=broker)
    body = ok(pushed, 201)
    assert body["num_loaded"] == 2
    assert pushed.headers["Location"].endswith(
        f"/elasticc2/brokermessage/{body['brokerMessageId']}"
    )
    stored = query(
        settings,
        "SELECT broker_message_id, topic, broker_publish_time FROM broker_message "
        "WHERE broker_message_id >= %s ORDER BY 1",
        body["brokerMessageId"],
    )
    assert len(stored) == 2 and {r[1] for r in stored} == {"REST_push"}
    assert stored[0][2] == datetime.fromtimestamp(1_700_000_000, UTC)
    assert query(settings, "SELECT count(*) FROM broker_message")[0][0] == before + 2
    assert ok(requests.put(url, json=fresh, headers=broker), 201)["num_loaded"] == 0
    refused(requests.put(url, json=[], headers=broker), 400, "")
    refused(
        requests.put(
            url,
            json={**message, "classifications": [{"classId": 1, "probability": 2}]},
            headers=broker,
        ),
        400,
        "probability",
    )


def test_the_served_schema_is_the_one_fuzzed_below(server: str) -> None:
    assert requests.get(f"{server}/openapi.json").json() == APP_SCHEMA


# Built from the app itself (no server needed at import), and checked above to be what the
# server serves. The lazy fixture loader of schemathesis does not work with pytest 9.
APP_SCHEMA = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(APP_SCHEMA)


@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_input_makes_a_server_error_or_an_answer_off_schema(
    case: schemathesis.Case, server: str, users: Users
) -> None:
    case.call_and_validate(
        base_url=server,
        headers={"Authorization": f"Bearer {users.broker_token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )

"""`tomstream sim load | send | synth` against the real PostgreSQL and Kafka.

The SNANA numbers are the DESC TOM's own (tom_desc tests/test_elasticc2_load_snana_fits.py and
tests/alertcycle_testbase.py) for the same tarball: 346 objects, 1,862 alerts, 52,172 forced
sources; 545 alerts through MJD 60578, then 105 more with --added-days 100 (650 from 131
objects). Each scenario gets its own database and topic prefix: the sim tables hold state
(what was sent) that other tests must not see or change.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import psycopg
import pytest
from astropy.io import fits
from conftest import SHARED, Isolated, missing_reference, read_topic

from tomstream.avro import decode_alert
from tomstream.config import Settings
from tomstream.services.sim import alerts, send, storage, synth

pytestmark = pytest.mark.integration

TOMSTREAM = [sys.executable, "-m", "tomstream"]
TARBALL = SHARED / "reference/samples/elasticc2_snana/elasticc2_alert_test_data.tar.bz2"
SYNTH_START = 60796.0


# ------------------------------------------------------------------------------- helpers


def _env(deployment: Isolated) -> dict[str, str]:
    return {**deployment.env, "COLUMNS": "200"}  # one summary line, however long


def _sim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOMSTREAM, "sim", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fails_with(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tomstream: ") and message in lines[0], lines[0]


def _sent(stdout: str) -> int:
    match = re.search(r"sent ([\d,]+) alerts", stdout)
    assert match, stdout
    return int(match[1].replace(",", ""))


def _read_topic(settings: Settings, name: str) -> list[dict]:
    """Every alert on a topic (all partitions, from the start), decoded."""
    records: list[dict] = []
    for message in read_topic(settings, settings.topic(name)):
        decoded = decode_alert(message.value())
        assert message.key() == str(decoded.record["diaObject"]["diaObjectId"]).encode()
        records.append(decoded.record)
    return records


def _expected_history(
    conn: psycopg.Connection, alert: dict, days: float
) -> tuple[list[int], list[int]]:
    """The DESC TOM's prvDiaSources / prvDiaForcedSources ids, straight from the tables."""
    object_id = alert["diaObject"]["diaObjectId"]
    t = alert["diaSource"]["midPointTai"]
    sources = [
        row[0]
        for row in conn.execute(
            "SELECT diasource_id FROM sim.diasource WHERE diaobject_id = %s "
            "AND midpointtai >= %s AND midpointtai < %s ORDER BY midpointtai",
            (object_id, t - days, t),
        )
    ]
    first = conn.execute(
        "SELECT min(midpointtai) FROM sim.diasource WHERE diaobject_id = %s", (object_id,)
    ).fetchone()[0]
    forced: list[int] = []
    if t - first > 0.5:
        forced = [
            row[0]
            for row in conn.execute(
                "SELECT diaforcedsource_id FROM sim.diaforcedsource WHERE diaobject_id = %s "
                "AND midpointtai >= %s AND midpointtai >= %s AND midpointtai < %s "
                "ORDER BY midpointtai",
                (object_id, t - days, first - 30, t),
            )
        ]
    return sources, forced


def _check_histories(conn: psycopg.Connection, records: list[dict], days: float) -> int:
    """Check each alert's history against the tables; return how many had forced photometry."""
    with_forced = 0
    for record in records:
        sources, forced = _expected_history(conn, record, days)
        assert [s["diaSourceId"] for s in record["prvDiaSources"]] == sources
        assert [f["diaForcedSourceId"] for f in record["prvDiaForcedSources"]] == forced
        with_forced += bool(forced)
    return with_forced


# ---------------------------------------------------------------------- the SNANA sample


@pytest.fixture(scope="module")
def snana(isolated: Callable[[str], Isolated]) -> Isolated:
    """A deployment of its own: the sim tables hold what was sent."""
    if not TARBALL.is_file():
        missing_reference(f"the ELAsTiCC2 SNANA sample is missing: {TARBALL}")
    return isolated("sim")


@pytest.fixture(scope="module")
def snana_settings(snana: Isolated) -> Settings:
    return snana.settings


@pytest.fixture(scope="module")
def snana_env(snana: Isolated) -> dict[str, str]:
    return _env(snana)


@pytest.fixture(scope="module")
def loaded(snana_env: dict[str, str]) -> str:
    return _ok(_sim(snana_env, "load", str(TARBALL)))


@pytest.fixture(scope="module")
def first_send(loaded: str, snana_env: dict[str, str]) -> str:
    return _ok(_sim(snana_env, "send", "--through-mjd", "60578"))


@pytest.fixture(scope="module")
def second_send(first_send: str, snana_env: dict[str, str]) -> str:
    return _ok(_sim(snana_env, "send", "--added-days", "100"))


@pytest.fixture(scope="module")
def snana_files(tmp_path_factory: pytest.TempPathFactory, snana: Isolated) -> Path:
    root = tmp_path_factory.mktemp("snana")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(root, filter="data")
    return root


def test_load_gives_the_desc_tom_counts(loaded: str, snana_settings: Settings) -> None:
    assert "346 new objects, 1,862 new alerts, 52,172 new forced sources" in loaded
    with psycopg.connect(snana_settings.postgres_dsn) as conn:
        assert storage.table_counts(conn) == storage.Counts(
            objects=346, alerts=1862, forced_sources=52172
        )
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM sim.diasource), (SELECT count(*) FROM sim.object_truth),"
            " (SELECT count(*) FROM sim.diaobject WHERE isddf),"
            " (SELECT count(*) FROM sim.alert WHERE sent_at IS NOT NULL)"
        ).fetchone()
        assert counts == (1862, 346, 0, 0)
        gentypes = dict(
            conn.execute("SELECT gentype, count(*) FROM sim.object_truth GROUP BY gentype")
        )
        assert gentypes == {20: 272, 50: 47, 82: 27}


def test_loading_again_changes_nothing(
    loaded: str, snana_env: dict[str, str], snana_settings: Settings
) -> None:
    again = _ok(_sim(snana_env, "load", str(TARBALL)))
    assert "0 new objects, 0 new alerts, 0 new forced sources" in again
    with psycopg.connect(snana_settings.postgres_dsn) as conn:
        assert storage.table_counts(conn) == storage.Counts(
            objects=346, alerts=1862, forced_sources=52172
        )


def test_loaded_rows_follow_the_snana_files(
    loaded: str, snana_settings: Settings, snana_files: Path
) -> None:
    head_file = next(snana_files.rglob("*KN_K17/*NONIaMODEL0-0001_HEAD.FITS.gz"))
    head = fits.getdata(head_file, 1)
    phot = fits.getdata(str(head_file).replace("_HEAD.", "_PHOT."), 1)
    snid = int(head["SNID"][0])
    first, last = int(head["PTROBS_MIN"][0]) - 1, int(head["PTROBS_MAX"][0]) - 1
    with psycopg.connect(snana_settings.postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT diaforcedsource_id, midpointtai, filtername, psflux, psfluxerr "
            "FROM sim.diaforcedsource WHERE diaobject_id = %s ORDER BY diaforcedsource_id",
            (snid,),
        ).fetchall()
        assert len(rows) == last - first + 1
        for index, (forced_id, mjd, band, flux, flux_err) in enumerate(rows):
            row = phot[first + index]
            assert forced_id == snid * 100_000 + index
            assert (mjd, band) == (row["MJD"], row["BAND"].strip())
            assert flux == pytest.approx(row["FLUXCAL"] * alerts.NJY_PER_FLUXCAL, rel=1e-6)
            assert flux_err == pytest.approx(row["FLUXCALERR"] * alerts.NJY_PER_FLUXCAL, rel=1e-6)
        detected = [first + i for i in range(len(rows)) if phot["PHOTFLAG"][first + i] & 4096]
        sources = conn.execute(
            "SELECT diasource_id, snr, ra, decl FROM sim.diasource WHERE diaobject_id = %s "
            "ORDER BY diasource_id",
            (snid,),
        ).fetchall()
        assert [s[0] for s in sources] == [snid * 100_000 + r - first for r in detected]
        for (_, snr, ra, decl), r in zip(sources, detected, strict=True):
            assert snr == pytest.approx(phot["FLUXCAL"][r] / phot["FLUXCALERR"][r], rel=1e-5)
            assert (ra, decl) == (head["RA"][0], head["DEC"][0])
        obj = conn.execute(
            "SELECT hostgal_mag_y, z_final, mwebv, hostgal_zphot_q050 FROM sim.diaobject "
            "WHERE diaobject_id = %s",
            (snid,),
        ).fetchone()
        expected = ("HOSTGAL_MAG_Y", "REDSHIFT_FINAL", "MWEBV", "HOSTGAL_ZPHOT_Q050")
        assert obj == pytest.approx([float(head[c][0]) for c in expected])
        truth = conn.execute(
            "SELECT gentype, peakmjd FROM sim.object_truth WHERE diaobject_id = %s", (snid,)
        ).fetchone()
        assert truth == (50, pytest.approx(float(head["SIM_PEAKMJD"][0])))


def test_send_through_60578_sends_545_wfd_alerts_of_102_objects(
    first_send: str, snana_settings: Settings
) -> None:
    assert _sent(first_send) == 545
    assert "of 102 objects through MJD 60578" in first_send
    assert "alerts-wfd 545, alerts-ddf-full 0, alerts-ddf-limited 0" in first_send
    wfd = _read_topic(snana_settings, "alerts-wfd")
    assert len(wfd) == 545
    assert _read_topic(snana_settings, "alerts-ddf-full") == []
    assert _read_topic(snana_settings, "alerts-ddf-limited") == []
    assert len({r["alertId"] for r in wfd}) == 545
    assert all(r["alertId"] == r["diaSource"]["diaSourceId"] for r in wfd)
    assert len({r["diaObject"]["diaObjectId"] for r in wfd}) == 102
    assert max(r["diaSource"]["midPointTai"] for r in wfd) <= 60578
    times = [r["diaSource"]["midPointTai"] for r in wfd]
    assert times == sorted(times)  # one partition: the order they were sent in


def test_added_days_100_sends_105_more(second_send: str, snana_settings: Settings) -> None:
    assert _sent(second_send) == 105
    wfd = _read_topic(snana_settings, "alerts-wfd")
    assert len(wfd) == 650
    assert len({r["alertId"] for r in wfd}) == 650
    assert len({r["diaObject"]["diaObjectId"] for r in wfd}) == 131
    with psycopg.connect(snana_settings.postgres_dsn) as conn:
        sent, last = conn.execute(
            "SELECT count(*), max(midpointtai) FROM sim.alert WHERE sent_at IS NOT NULL"
        ).fetchone()
        unsent_first = conn.execute(
            "SELECT min(midpointtai) FROM sim.alert WHERE sent_at IS NULL"
        ).fetchone()[0]
        log = conn.execute(
            "SELECT alerts, wfd_messages, finished_at IS NOT NULL FROM sim.send_log "
            "ORDER BY send_id"
        ).fetchall()
    assert sent == 650
    last_of_first_send = max(r["diaSource"]["midPointTai"] for r in wfd[:545])
    through = alerts.through_mjd_after(last_of_first_send, 100)
    assert f"through MJD {through:g}" in second_send
    assert last <= through < unsent_first
    assert log == [(545, 545, True), (105, 105, True)]


def test_a_repeated_send_sends_nothing(
    second_send: str, snana_env: dict[str, str], snana_settings: Settings
) -> None:
    # Loading the files again does not make sent alerts unsent.
    assert "0 new alerts" in _ok(_sim(snana_env, "load", str(TARBALL)))
    assert _sent(_ok(_sim(snana_env, "send", "--through-mjd", "60578"))) == 0
    through = re.search(r"through MJD ([\d.]+)", second_send)[1]  # type: ignore[index]
    assert _sent(_ok(_sim(snana_env, "send", "--through-mjd", through))) == 0
    assert len(_read_topic(snana_settings, "alerts-wfd")) == 650


def test_alert_histories_follow_the_desc_tom_rules(
    second_send: str, snana_settings: Settings
) -> None:
    wfd = _read_topic(snana_settings, "alerts-wfd")
    with psycopg.connect(snana_settings.postgres_dsn) as conn:
        with_forced = _check_histories(conn, wfd, alerts.FULL_HISTORY_DAYS)
        obj = conn.execute(
            "SELECT ra, decl, hostgal_mag_y FROM sim.diaobject WHERE diaobject_id = %s",
            (wfd[0]["diaObject"]["diaObjectId"],),
        ).fetchone()
    assert 0 < with_forced < len(wfd)  # some alerts come within half a day of the first
    assert any(r["prvDiaSources"] for r in wfd)
    first = wfd[0]
    assert (first["diaObject"]["ra"], first["diaObject"]["decl"]) == obj[:2]
    assert first["diaObject"]["hostgal_mag_Y"] == pytest.approx(obj[2])
    assert first["diaObject"]["simVersion"] == alerts.SIM_VERSION


def test_only_one_send_runs_at_a_time(
    second_send: str, snana_env: dict[str, str], snana_settings: Settings
) -> None:
    with psycopg.connect(snana_settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (send.SEND_LOCK_KEY,))
        running = _sim(snana_env, "send", "--through-mjd", "61000")
    _fails_with(running, "another `tomstream sim send` is running")


def test_send_refuses_bad_options_with_one_line(loaded: str, snana_env: dict[str, str]) -> None:
    _fails_with(_sim(snana_env, "send"), "exactly one of --through-mjd and --added-days")
    both = _sim(snana_env, "send", "--through-mjd", "60000", "--added-days", "1")
    _fails_with(both, "exactly one of --through-mjd and --added-days")
    _fails_with(_sim(snana_env, "send", "--through-mjd", "60000", "--rate", "0"), "--rate")
    _fails_with(_sim(snana_env, "load", "/nonexistent/elasticc2"), "no such file or directory")


# ---------------------------------------------------------------------- the synthetic survey


SPEC = synth.SynthSpec(objects=400, seed=11, start_mjd=SYNTH_START, days=10, ddf_fraction=0.1)
SYNTH_ARGS = ("--objects", "400", "--seed", "11", "--days", "10", "--ddf-fraction", "0.1")


def _arrays(batch: storage.SimBatch) -> dict[str, np.ndarray]:
    epochs = {f"epochs.{f.name}": getattr(batch.epochs, f.name) for f in fields(batch.epochs)}
    objects = {f"objects.{name}": values for name, values in batch.objects.items()}
    return epochs | objects | {f"truth.{name}": values for name, values in batch.truth.items()}


def test_synth_is_deterministic_for_a_seed() -> None:
    (one,), (two,) = synth.generate(SPEC), synth.generate(SPEC)
    (other,) = synth.generate(SPEC.model_copy(update={"seed": 12}))
    first, second = _arrays(one), _arrays(two)
    assert first.keys() == second.keys()
    for name, values in first.items():
        assert np.array_equal(values, second[name]), name
    assert not np.array_equal(one.epochs.flux[:50], other.epochs.flux[:50])
    assert other.objects["diaobject_id"][0] == synth.SYNTH_ID_BASE + 12 * synth.IDS_PER_SEED


def _alerts_between(conn: psycopg.Connection, after: float, through: float) -> int:
    return conn.execute(
        "SELECT count(*) FROM sim.alert WHERE midpointtai > %s AND midpointtai <= %s",
        (after, through),
    ).fetchone()[0]


def test_synth_survey_streams_day_by_day(isolated: Callable[[str], Isolated]) -> None:
    deployment = isolated("synth")
    settings, env = deployment.settings, _env(deployment)
    _fails_with(_sim(env, "send", "--through-mjd", "61000"), "no alerts loaded")

    first = _ok(_sim(env, "synth", *SYNTH_ARGS))
    assert "400 new objects" in first
    assert "0 new objects, 0 new alerts, 0 new forced sources" in _ok(
        _sim(env, "synth", *SYNTH_ARGS)
    )
    _fails_with(_sim(env, "synth", "--objects", "0"), "invalid --objects")

    with psycopg.connect(settings.postgres_dsn) as conn:
        counts = storage.table_counts(conn)
        assert counts.objects == 400
        assert 5 * 400 < counts.forced_sources < 60 * 400
        assert 0.05 * counts.forced_sources < counts.alerts < 0.8 * counts.forced_sources
        gentypes = {row[0] for row in conn.execute("SELECT DISTINCT gentype FROM sim.object_truth")}
        assert gentypes <= {10, 20, 31, 50, 60, 82} and len(gentypes) >= 5
        ddf, min_id = conn.execute(
            "SELECT count(*) FILTER (WHERE isddf), min(diaobject_id) FROM sim.diaobject"
        ).fetchone()
        assert 15 <= ddf <= 70
        assert min_id == synth.SYNTH_ID_BASE + 11 * synth.IDS_PER_SEED
        bad = conn.execute(
            "SELECT count(*) FROM sim.diasource s JOIN sim.diaforcedsource f "
            "ON f.diaforcedsource_id = s.diasource_id "
            "WHERE s.snr <= 5 OR f.psflux <> s.psflux OR f.midpointtai <> s.midpointtai"
        ).fetchone()[0]
        assert bad == 0
        no_host = conn.execute(
            "SELECT count(*) FROM sim.diaobject o JOIN sim.object_truth t USING (diaobject_id) "
            "WHERE (t.gentype = 82) <> (o.hostgal_mag_r = 999)"
        ).fetchone()[0]
        assert no_host == 0

        _fails_with(_sim(env, "send", "--added-days", "1"), "none was sent yet")
        # Night by night: the first night through --through-mjd, then --added-days 1.
        through = alerts.through_mjd_after(SPEC.start_mjd, 0)
        sent = [_sent(_ok(_sim(env, "send", "--through-mjd", str(through))))]
        expected = [_alerts_between(conn, 0.0, through)]
        for _ in range(SPEC.days - 1):
            previous, through = through, through + 1.0
            sent.append(_sent(_ok(_sim(env, "send", "--added-days", "1"))))
            expected.append(_alerts_between(conn, previous, through))
        assert sent == expected
        assert all(sent), sent  # detections every night
        assert sum(sent) == counts.alerts

        wfd = _read_topic(settings, "alerts-wfd")
        full = _read_topic(settings, "alerts-ddf-full")
        limited = _read_topic(settings, "alerts-ddf-limited")
        assert len(wfd) + len(full) == counts.alerts
        assert [r["alertId"] for r in full] == [r["alertId"] for r in limited]
        assert len({r["alertId"] for r in wfd + full}) == counts.alerts
        ddf_ids = {
            row[0] for row in conn.execute("SELECT diaobject_id FROM sim.diaobject WHERE isddf")
        }
        assert {r["diaObject"]["diaObjectId"] for r in full} <= ddf_ids
        assert not {r["diaObject"]["diaObjectId"] for r in wfd} & ddf_ids
        _check_histories(conn, wfd[::7], alerts.FULL_HISTORY_DAYS)
        _check_histories(conn, full[::7], alerts.FULL_HISTORY_DAYS)
        _check_histories(conn, limited[::7], alerts.LIMITED_HISTORY_DAYS)


def test_send_keeps_to_its_rate(isolated: Callable[[str], Isolated]) -> None:
    deployment = isolated("rate")
    settings, env = deployment.settings, _env(deployment)
    _ok(_sim(env, "synth", "--objects", "100", "--seed", "3", "--days", "3"))
    with psycopg.connect(settings.postgres_dsn) as conn:
        alerts_total = storage.table_counts(conn).alerts
    assert alerts_total > 50
    started = time.monotonic()
    out = _ok(_sim(env, "send", "--through-mjd", str(SYNTH_START + 10), "--rate", "100"))
    assert _sent(out) == alerts_total
    assert time.monotonic() - started >= (alerts_total - 1) / 100

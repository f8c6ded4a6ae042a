"""Spectra API benchmark: p50 / p95 latency of ltcv, gethottransients and spectrawanted.

1. **Data.** A synthetic survey in the tables ingest writes (``diaobject``, ``diasource``,
   ``diaforcedsource``), written by a direct loader: numpy generates chunks of objects and their
   light curves, PostgreSQL's binary ``COPY`` loads them, then the tables' own secondary
   indexes (dropped during the load) are rebuilt exactly as the migrations define them.
   By default 1,000,000 objects over a 10-year survey (MJD 60000-63650), 30 to 36 forced points
   each (every ~3 days, ~33.5 million rows), a detection (diaSource) wherever S/N > 5, and for
   30 % of the objects the newest detection without its forced point (as alerts deliver it), so
   the "patch" light curve has work to do. Plus 5,000 wanted spectra among recently detected
   objects, plans for 10 % of them, spectrum reports for 1,000 objects.
   The database (``tomstream_bench_spectra`` by default) is kept and reused by later runs with
   the same parameters; ``--rebuild`` makes it again.
2. **Measured:** ``tomstream api`` as a separate process on a free port, called over HTTP with
   a keep-alive session and a bearer token, one request at a time, after warm-up requests;
   latency = the client's wall time per request. Each request picks new random inputs:
   ltcv 10 random objects; gethottransients ``detected_in_last_days`` 30 at a random
   ``mjd_now``; spectrawanted with its defaults at ``mjd_now`` = the end of the survey.
3. **Baseline, same run, same database:** the DESC TOM's own query shapes run directly with
   psycopg (no HTTP, no JSON: a conservative baseline): gethottransients as ``GetHotSNeView``
   (hot = a forced point with S/N >= 5 in the window, through ``IN (SELECT DISTINCT ON ...)``),
   spectrawanted as ``WhatSpectraAreWanted`` (four temporary tables), and a light curve as
   the DESC REST views fetched one (per object: the object, its sources, its forced sources).

Usage::

    .venv/bin/python bench/spectra_api.py [--objects 1000000] [--rebuild] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tomstream.client import wait_until_ready  # noqa: E402
from tomstream.config import Settings  # noqa: E402
from tomstream.services.spectra_api import auth  # noqa: E402
from tomstream.services.spectra_api.services.mjd import datetime_of  # noqa: E402
from tomstream.services.spectra_api.storage import accounts  # noqa: E402
from tomstream.storage.migrations import migrate  # noqa: E402

SECTION = "spectra_api"
DOCS = ROOT / "docs" / "benchmarks.md"
SURVEY_START = 60000.0
BANDS = np.array([b"u", b"g", b"r", b"i", b"z", b"Y"])
ZP = 31.4
NOISE_DEPTH_MAG = 24.5  # 5-sigma depth of one visit: error = flux at that magnitude / 5
CHUNK = 50_000
TABLES = ("diaobject", "diasource", "diaforcedsource")
TARGETS_MS = {"ltcv": 100.0, "gethottransients": 500.0, "spectrawanted": 500.0}


@dataclass(frozen=True)
class Survey:
    objects: int
    survey_days: float
    min_forced: int
    max_forced: int
    seed: int

    @property
    def end(self) -> float:
        return SURVEY_START + self.survey_days


# ------------------------------------------------------------------------------------- the data


def _forced_dtype() -> np.dtype:
    """One row of a binary COPY into diaforcedsource (every field fixed-size, big-endian)."""
    return np.dtype(
        [
            ("n", ">i2"), ("l0", ">i4"), ("id", ">i8"), ("l1", ">i4"), ("obj", ">i8"),
            ("l2", ">i4"), ("mjd", ">f8"), ("l3", ">i4"), ("band", "S1"),
            ("l4", ">i4"), ("flux", ">f4"), ("l5", ">i4"), ("err", ">f4"),
        ]
    )  # fmt: skip


def _source_dtype() -> np.dtype:
    return np.dtype(
        [
            ("n", ">i2"), ("l0", ">i4"), ("id", ">i8"), ("l1", ">i4"), ("obj", ">i8"),
            ("l2", ">i4"), ("mjd", ">f8"), ("l3", ">i4"), ("band", "S1"),
            ("l4", ">i4"), ("ra", ">f8"), ("l5", ">i4"), ("dec", ">f8"),
            ("l6", ">i4"), ("flux", ">f4"), ("l7", ">i4"), ("err", ">f4"),
            ("l8", ">i4"), ("snr", ">f4"),
        ]
    )  # fmt: skip


def _binary_rows(dtype: np.dtype, columns: dict[str, np.ndarray]) -> bytes:
    rows = np.zeros(len(next(iter(columns.values()))), dtype=dtype)
    names = [name for name in dtype.names if not name.startswith("l") and name != "n"]
    rows["n"] = len(names)
    for index, name in enumerate(names):
        rows[f"l{index}"] = dtype[name].itemsize
        rows[name] = columns[name]
    return rows.tobytes()


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"


@dataclass
class Chunk:
    objects: list[tuple[Any, ...]]
    forced: bytes
    sources: bytes
    n_forced: int
    n_sources: int


def generate(survey: Survey, first: int, count: int, rng: np.random.Generator) -> Chunk:
    """Objects ``first .. first+count-1`` and their photometry (rise-and-fall transients)."""
    ids = np.arange(first, first + count, dtype=np.int64)
    ra, dec = rng.uniform(0, 360, count), np.degrees(np.arcsin(rng.uniform(-1, 0.2, count)))
    peak = SURVEY_START + rng.uniform(0, survey.survey_days, count)
    peak_mag = rng.uniform(20.0, 25.0, count)
    amplitude = 10 ** ((ZP - peak_mag) / 2.5)
    per_object = rng.integers(survey.min_forced, survey.max_forced + 1, count)
    owner = np.repeat(np.arange(count), per_object)
    index = np.arange(len(owner)) - np.repeat(np.cumsum(per_object) - per_object, per_object)
    # One visit every ~3 days from ~30 days before the peak; visits fall in the night (x.0-x.4).
    start = np.floor(peak - rng.uniform(20, 40, count))
    mjd = (
        start[owner]
        + 3.0 * index
        + rng.integers(-1, 2, len(owner))
        + rng.uniform(0, 0.4, len(owner))
    )
    band = BANDS[rng.integers(0, 6, len(owner))]
    phase = mjd - peak[owner]
    width = np.where(phase < 0, 5.0, 12.0)
    model = amplitude[owner] * np.exp(-0.5 * (phase / width) ** 2)
    error = np.full(len(owner), 10 ** ((ZP - NOISE_DEPTH_MAG) / 2.5) / 5) * rng.uniform(
        0.8, 1.2, len(owner)
    )
    flux = model + rng.normal(0, error)
    forced_id = ids[owner] * 1000 + index
    detected = flux / error > 5
    # The newest detection of 30 % of the objects has no forced point yet (alerts carry forced
    # photometry of earlier epochs only): the light curve patches it in from the diaSource.
    last_detection = np.zeros(len(owner), dtype=bool)
    detected_at = np.flatnonzero(detected)
    if len(detected_at):
        owners = owner[detected_at]
        last_of_owner = np.flatnonzero(np.append(owners[1:] != owners[:-1], True))
        last_detection[detected_at[last_of_owner]] = True
    unforced = last_detection & (rng.uniform(0, 1, len(owner)) < 0.3)
    keep = ~unforced
    forced = _binary_rows(
        _forced_dtype(),
        {
            "id": forced_id[keep], "obj": ids[owner][keep], "mjd": mjd[keep],
            "band": band[keep], "flux": flux[keep], "err": error[keep],
        },
    )  # fmt: skip
    sources = _binary_rows(
        _source_dtype(),
        {
            "id": forced_id[detected], "obj": ids[owner][detected], "mjd": mjd[detected],
            "band": band[detected], "ra": ra[owner][detected], "dec": dec[owner][detected],
            "flux": flux[detected], "err": error[detected],
            "snr": flux[detected] / error[detected],
        },
    )  # fmt: skip
    host_mag = rng.uniform(18, 26, (count, 6))
    objects = [
        (
            int(ids[i]), "elasticc.v0_9_1.alert", float(ra[i]), float(dec[i]),
            float(rng.uniform(0.01, 1.2)), 0.01,
            json.dumps({
                **{f"hostgal_mag_{b}": float(host_mag[i, k]) for k, b in enumerate("ugrizY")},
                **{f"hostgal_magerr_{b}": 0.05 for b in "ugrizY"},
                "hostgal_ellipticity": 0.2, "hostgal_sqradius": 1.5, "hostgal_snsep": 0.8,
            }),
            float(peak[i]),
        )
        for i in range(count)
    ]  # fmt: skip
    return Chunk(objects, forced, sources, int(keep.sum()), int(detected.sum()))


def _copy_binary(conn: psycopg.Connection, table: str, columns: str, data: bytes) -> None:
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({columns}) FROM STDIN BINARY") as copy,
    ):
        copy.write(COPY_HEADER + data + COPY_TRAILER)


def _secondary_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the photometry tables' indexes that are not primary keys."""
    return conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) AND NOT x.indisprimary",
        (list(TABLES),),
    ).fetchall()


def build(settings: Settings, survey: Survey, say: Callable[[str], None]) -> dict[str, int]:
    """Load the survey (if this database does not hold it yet); return the row counts."""
    migrate(settings.postgres_dsn)
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_survey (parameters jsonb NOT NULL)")
        held = conn.execute("SELECT parameters FROM bench_survey").fetchone()
        if held and held[0] == asdict(survey):
            say("the database already holds this survey: reusing it")
            return counts(conn)
        if held or conn.execute("SELECT count(*) FROM diaobject").fetchone() != (0,):
            raise SystemExit("the database holds other data: use --rebuild")
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET synchronous_commit = off")
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        rng = np.random.default_rng(survey.seed)
        started = time.monotonic()
        loaded = 0
        first = 1
        while loaded < survey.objects:
            count = min(CHUNK, survey.objects - loaded)
            chunk = generate(survey, first + loaded, count, rng)
            with conn.transaction():
                with (
                    conn.cursor() as cursor,
                    cursor.copy(
                        "COPY diaobject (diaobject_id, schema_name, ra, decl, redshift, "
                        "redshift_err, properties, alert_mjd) FROM STDIN"
                    ) as copy,
                ):
                    for row in chunk.objects:
                        copy.write_row(row)
                _copy_binary(
                    conn, "diaforcedsource",
                    "diaforcedsource_id, diaobject_id, mjd, band, flux, flux_err", chunk.forced,
                )  # fmt: skip
                _copy_binary(
                    conn, "diasource",
                    "diasource_id, diaobject_id, mjd, band, ra, decl, flux, flux_err, snr",
                    chunk.sources,
                )  # fmt: skip
            loaded += count
            say(f"loaded {loaded:,} objects ({time.monotonic() - started:.0f} s)")
        for name, definition in indexes:
            say(f"building index {name}")
            conn.execute(definition)
        for table in TABLES:
            say(f"vacuum analyze {table}")
            conn.execute(f"VACUUM ANALYZE {table}")
        _spectrum_cycle(conn, survey, random.Random(survey.seed))
        conn.execute("INSERT INTO bench_survey VALUES (%s)", (json.dumps(asdict(survey)),))
        say(f"built in {time.monotonic() - started:.0f} s")
        return counts(conn)


def _spectrum_cycle(conn: psycopg.Connection, survey: Survey, rng: random.Random) -> None:
    """Wanted spectra among the objects detected in the survey's last 14 days, some plans and
    reports (what spectrawanted filters on)."""
    recent = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT diaobject_id FROM diasource WHERE mjd >= %s", (survey.end - 14,)
        )
    ]
    wanted = rng.sample(recent, min(5000, len(recent)))
    # Older requests, of objects not detected lately: filtered out by the detection window.
    chosen = set(wanted)
    older = [o for o in rng.sample(range(1, survey.objects + 1), 20000) if o not in chosen]
    user = conn.execute(
        "INSERT INTO api_user (username) VALUES ('bench') "
        "ON CONFLICT (username) DO UPDATE SET updated_at = now() RETURNING user_id"
    ).fetchone()[0]
    now = datetime_of(survey.end)
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO wanted_spectrum (diaobject_id, requester, priority, wanted_at, user_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (o, rng.choice(["RESSPECT", "other"]), rng.randint(1, 5),
                 now - timedelta(days=rng.uniform(0, 20)), user)
                for o in wanted + older[:15000]
            ],
        )  # fmt: skip
        cursor.executemany(
            "INSERT INTO planned_spectrum (diaobject_id, facility, created_at, user_id) "
            "VALUES (%s, %s, %s, %s)",
            [(o, "Gemini", now - timedelta(days=rng.uniform(0, 10)), user) for o in wanted[::10]],
        )
        cursor.executemany(
            "INSERT INTO spectrum_info (diaobject_id, facility, mjd, z, classid, user_id) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (o, "Keck", survey.end - rng.uniform(0, 30), rng.uniform(0.05, 1), 2222, user)
                for o in wanted[5::25] + older[15000:16000]
            ],
        )
    for table in ("wanted_spectrum", "planned_spectrum", "spectrum_info"):
        conn.execute(f"VACUUM ANALYZE {table}")


def counts(conn: psycopg.Connection) -> dict[str, int]:
    # Estimates from the statistics: exact counts of 30 million rows take longer than the
    # benchmark, and VACUUM ANALYZE after the load made these exact.
    return {
        table: int(conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"public.{table}",)
        ).fetchone()[0])
        for table in (*TABLES, "wanted_spectrum")
    }  # fmt: skip


# -------------------------------------------------------------------------------- measurement


@contextmanager
def api_server(settings: Settings) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMSTREAM_")}
    env.update(
        TOMSTREAM_POSTGRES_DSN=settings.postgres_dsn,
        TOMSTREAM_MONGODB_DATABASE=settings.mongodb_database,
        TOMSTREAM_TOPIC_PREFIX=settings.topic_prefix,
        TOMSTREAM_API_OUTBOX_RELAY="false",
        TOMSTREAM_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tomstream", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def token_for(settings: Settings) -> str:
    token = auth.new_token()
    with psycopg.connect(settings.postgres_dsn) as conn:
        user = accounts.find_user(conn, "bench")
        assert user is not None
        accounts.add_token(conn, user.user_id, auth.digest(token))
    return token


@dataclass
class Timing:
    name: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(
    name: str, call: Callable[[], tuple[float, Any]], repeat: int, warmup: int
) -> tuple[Timing, list[Any]]:
    """Run ``call`` (which returns its own elapsed seconds and a result) after warm-up calls."""
    for _ in range(warmup):
        call()
    samples, results = [], []
    for _ in range(repeat):
        elapsed, result = call()
        samples.append(elapsed * 1000)
        results.append(result)
    return Timing(name, samples), results


def clocked(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def measure_api(
    url: str, token: str, survey: Survey, repeat: int, rng: random.Random
) -> dict[str, tuple[Timing, list[Any]]]:
    """Latency = from sending the request to having the whole answer (not the client's own
    JSON decoding, which is checked afterwards)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def post(path: str, body: dict[str, Any]) -> tuple[float, Any]:
        elapsed, response = clocked(
            lambda: session.post(f"{url}/elasticc2/{path}", json=body, timeout=120)
        )
        response.raise_for_status()
        return elapsed, response.json()

    def ltcv() -> tuple[float, int]:
        ids = rng.sample(range(1, survey.objects + 1), 10)
        elapsed, body = post("ltcv", {"objectids": ids})
        assert len(body["diaobject"]) == 10
        return elapsed, sum(len(o["photometry"]["mjd"]) for o in body["diaobject"])

    def hot(days: float) -> Callable[[], tuple[float, tuple[int, int]]]:
        def call() -> tuple[float, tuple[int, int]]:
            mjd_now = rng.uniform(SURVEY_START + 120, survey.end)
            body = {"detected_in_last_days": days, "mjd_now": mjd_now}
            elapsed, answer = post("gethottransients", body)
            found = answer["diaobject"]
            return elapsed, (len(found), sum(len(o["photometry"]["mjd"]) for o in found))

        return call

    def wanted() -> tuple[float, int]:
        elapsed, body = post("spectrawanted", {"mjd_now": survey.end})
        return elapsed, len(body["wantedspectra"])

    return {
        "ltcv": timed("ltcv", ltcv, repeat, 5),
        "gethottransients": timed("gethottransients", hot(30), max(repeat // 2, 10), 2),
        # Not a target: how the cost follows the number of hot objects.
        "gethottransients 7 days": timed("7 days", hot(7), max(repeat // 2, 10), 2),
        "spectrawanted": timed("spectrawanted", wanted, max(repeat // 2, 10), 2),
    }


# ------------------------------------------------------------------------ the DESC TOM's shapes


def desc_light_curves(conn: psycopg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """As the DESC TOM's REST views read an object with its sources: one query per table and
    object (the Django ORM's pattern)."""
    found = []
    for object_id in ids:
        obj = conn.execute(
            "SELECT * FROM diaobject WHERE diaobject_id = %s", (object_id,)
        ).fetchone()
        sources = conn.execute(
            "SELECT * FROM diasource WHERE diaobject_id = %s", (object_id,)
        ).fetchall()
        forced = conn.execute(
            "SELECT * FROM diaforcedsource WHERE diaobject_id = %s", (object_id,)
        ).fetchall()
        found.append({"object": obj, "sources": sources, "forced": forced})
    return found


def desc_hot(conn: psycopg.Connection, mjd_now: float, days: float) -> int:
    """GetHotSNeView's query on these tables (hot: a forced point with S/N >= 5)."""
    rows = conn.execute(
        "SELECT f.diaobject_id, o.ra, o.decl AS dec, f.diaforcedsource_id, f.band, f.mjd, "
        "       f.flux, f.flux_err "
        "FROM diaforcedsource f INNER JOIN diaobject o ON f.diaobject_id = o.diaobject_id "
        "WHERE f.diaobject_id IN ("
        "  SELECT DISTINCT ON (f2.diaobject_id) f2.diaobject_id FROM diaforcedsource f2 "
        "  WHERE f2.mjd >= %(t0)s AND f2.flux / f2.flux_err >= 5. AND f2.mjd <= %(t1)s) "
        "AND f.mjd <= %(t1)s ORDER BY f.diaobject_id, f.mjd",
        {"t0": mjd_now - days, "t1": mjd_now},
    ).fetchall()
    sne: dict[int, dict[str, Any]] = {}
    for objid, ra, dec, _, band, mjd, flux, err in rows:
        entry = sne.setdefault(objid, {"objectid": objid, "ra": ra, "dec": dec, "photometry": {
            "mjd": [], "band": [], "flux": [], "fluxerr": []}})  # fmt: skip
        for key, value in zip(
            ("mjd", "band", "flux", "fluxerr"), (mjd, band, flux, err), strict=True
        ):
            entry["photometry"][key].append(value)
    return len(sne)


def desc_wanted(conn: psycopg.Connection, now: datetime, mjd_now: float) -> int:
    """WhatSpectraAreWanted's four temporary tables (its defaults: 14, 7, 14, 7 days)."""
    params = {
        "wanttime": now - timedelta(days=14),
        "reqtime": now - timedelta(days=7),
        "obstime": mjd_now - 7,
        "detsince": mjd_now - 14,
    }
    with conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE TEMP TABLE tmp_wanted AS SELECT DISTINCT ON (diaobject_id, requester, "
            "priority) diaobject_id, requester, priority FROM (SELECT w.diaobject_id, "
            "w.requester, w.priority, r.facility FROM wanted_spectrum w LEFT JOIN "
            "planned_spectrum r ON r.diaobject_id = w.diaobject_id AND r.created_at > %(reqtime)s "
            "WHERE w.wanted_at >= %(wanttime)s) subq WHERE facility IS NULL",
            params,
        )
        conn.execute(
            "CREATE TEMP TABLE tmp_wanted2 AS SELECT DISTINCT ON (diaobject_id, requester, "
            "priority) diaobject_id, requester, priority FROM (SELECT t.diaobject_id, "
            "t.requester, t.priority, s.specinfo_id FROM tmp_wanted t LEFT JOIN spectrum_info s "
            "ON s.diaobject_id = t.diaobject_id AND s.mjd >= %(obstime)s) subq "
            "WHERE specinfo_id IS NULL",
            params,
        )
        conn.execute(
            "CREATE TEMP TABLE tmp_wanted3 AS SELECT DISTINCT ON (t.diaobject_id, requester, "
            "priority) t.diaobject_id, requester, priority FROM tmp_wanted2 t INNER JOIN "
            "diasource s ON t.diaobject_id = s.diaobject_id AND s.mjd > %(detsince)s "
            "ORDER BY diaobject_id, requester, priority",
            params,
        )
        conn.execute(
            "CREATE TEMP TABLE tmp_wanted4 AS SELECT diaobject_id, mjd, band, mag FROM ("
            "SELECT DISTINCT ON (f.diaobject_id, f.band) f.diaobject_id, f.band, f.mjd, "
            "-2.5 * log(f.flux) + 27 AS mag FROM tmp_wanted3 t INNER JOIN diaforcedsource f "
            "ON t.diaobject_id = f.diaobject_id WHERE f.flux > 0 AND f.flux > 3 * f.flux_err "
            "ORDER BY f.diaobject_id, f.band) subq ORDER BY mjd DESC"
        )
        rows = conn.execute(
            "SELECT w3.diaobject_id, w3.requester, w3.priority, w4.band, w4.mjd, w4.mag, o.ra, "
            "o.decl FROM tmp_wanted3 w3 INNER JOIN tmp_wanted4 w4 ON w3.diaobject_id = "
            "w4.diaobject_id INNER JOIN diaobject o ON w3.diaobject_id = o.diaobject_id "
            "ORDER BY w3.priority DESC, w3.diaobject_id"
        ).fetchall()
    return len({row[0] for row in rows})


def measure_baseline(
    settings: Settings, survey: Survey, repeat: int, rng: random.Random
) -> dict[str, tuple[Timing, list[Any]]]:
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        return {
            "ltcv": timed(
                "ltcv",
                lambda: clocked(lambda: desc_light_curves(
                    conn, rng.sample(range(1, survey.objects + 1), 10))),
                repeat, 2,
            ),
            "gethottransients": timed(
                "gethottransients",
                lambda: clocked(lambda: desc_hot(
                    conn, rng.uniform(SURVEY_START + 120, survey.end), 30)),
                max(repeat // 10, 3), 1,
            ),
            "spectrawanted": timed(
                "spectrawanted",
                lambda: clocked(lambda: desc_wanted(conn, datetime_of(survey.end), survey.end)),
                max(repeat // 10, 3), 1,
            ),
        }  # fmt: skip


# ------------------------------------------------------------------------------------ reporting


# What the three endpoints read: a running TOM has them in PostgreSQL's buffers.
PREWARMED = (
    "diaobject", "diaobject_pkey", "diaforcedsource_object_mjd", "diasource_object_mjd",
    "diasource_mjd", "wanted_spectrum", "spectrum_info",
)  # fmt: skip


def prewarm(dsn: str) -> str:
    """Load the relations the endpoints read into PostgreSQL's buffers (pg_prewarm), as in a
    server that has been answering for a while; say what was done, for the report."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            blocks = sum(
                conn.execute("SELECT pg_prewarm(%s::regclass)", (name,)).fetchone()[0]
                for name in PREWARMED
            )
            buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
    except psycopg.Error as error:
        return f"not prewarmed ({str(error).strip().splitlines()[0]})"
    return (
        f"{blocks * 8 / 1024:,.0f} MB of objects and indexes loaded into PostgreSQL's "
        f"{buffers} of shared buffers first (pg_prewarm), as in a server that has been "
        "answering for a while"
    )


def section(
    command: str,
    load: tuple[float, float],
    survey: Survey,
    rows: dict[str, int],
    warmed: str,
    ours: dict[str, tuple[Timing, list[Any]]],
    baseline: dict[str, tuple[Timing, list[Any]]],
) -> str:
    ltcv_points = statistics.mean(ours["ltcv"][1])
    hot_counts = [objects for objects, _ in ours["gethottransients"][1]]
    hot_points = statistics.mean(points for _, points in ours["gethottransients"][1])
    wanted_count = statistics.mean(ours["spectrawanted"][1])
    lines = [
        f"<!-- bench:{SECTION}:start -->",
        "## Spectra API: ltcv, gethottransients, spectrawanted latency",
        "",
        "`bench/spectra_api.py`: a synthetic survey loaded straight into the tables ingest "
        "writes, `tomstream api` as its own process, requests over HTTP one at a time "
        "(bearer token, keep-alive), latency = the client's wall time; new random inputs per "
        "request. Baseline: the DESC TOM's query shapes on the same database, run directly with "
        "psycopg (no HTTP, no JSON).",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; PostgreSQL and the API on the same machine; load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after the run (other work on the machine "
        "competes for its two cores)",
        f"- data: {rows['diaobject']:,} objects, {rows['diaforcedsource']:,} forced sources, "
        f"{rows['diasource']:,} detections over {survey.survey_days:.0f} days (MJD "
        f"{SURVEY_START:.0f}-{survey.end:.0f}), {rows['wanted_spectrum']:,} wanted spectra",
        f"- buffers: {warmed}",
        f"- per request: ltcv 10 random objects ({ltcv_points:.0f} points on average); "
        f"gethottransients 30 days at a random `mjd_now` ({min(hot_counts):,}-"
        f"{max(hot_counts):,} hot objects, mean {statistics.mean(hot_counts):,.0f}, with "
        f"{hot_points:,.0f} points); "
        f"spectrawanted with its defaults at the survey's end ({wanted_count:,.0f} returned)",
        "",
        "| endpoint | requests | p50 (ms) | p95 (ms) | target p95 | DESC TOM shape p50 (ms) "
        "| p95 (ms) | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for name, target in TARGETS_MS.items():
        timing, base = ours[name][0], baseline[name][0]
        lines.append(
            f"| {name} | {len(timing.samples_ms)} | {timing.p50:.0f} | {timing.p95:.0f} | "
            f"< {target:.0f} | {base.p50:.0f} | {base.p95:.0f} | {len(base.samples_ms)} |"
        )
        met = "met" if timing.p95 < target else "**not met**"
        verdicts.append(f"{name} p95 < {target:.0f} ms: {met} ({timing.p95:.0f} ms)")
    week, week_counts = ours["gethottransients 7 days"]
    week_objects = statistics.mean(objects for objects, _ in week_counts)
    lines.append(
        f"| gethottransients, 7 days ({week_objects:,.0f} hot objects) | "
        f"{len(week.samples_ms)} | {week.p50:.0f} | {week.p95:.0f} | none | - | - | - |"
    )
    per_object = ours["gethottransients"][0].p50 / statistics.mean(hot_counts) * 1000
    lines += ["", "Targets: " + "; ".join(verdicts) + ".", "",
              f"gethottransients costs about {per_object:.0f} µs per hot object (its light "
              "curve included): a 30-day answer is every hot object's whole light curve, "
              "megabytes of JSON; the 7-day row shows the cost following the number of hot "
              "objects.", "",
              "Baseline shapes: ltcv = one query per object and table (the DESC REST views); "
              "gethottransients = `GetHotSNeView` (a forced point with S/N >= 5 in the window, "
              "which scans every forced source); spectrawanted = `WhatSpectraAreWanted` (four "
              "temporary tables).", f"<!-- bench:{SECTION}:end -->", ""]  # fmt: skip
    return "\n".join(lines)


def write_section(text: str, path: Path = DOCS) -> None:
    """Replace this benchmark's section between its markers (or append it); keep the rest."""
    current = path.read_text()
    markers = re.compile(
        rf"<!-- bench:{SECTION}:start -->.*?<!-- bench:{SECTION}:end -->\n?", re.DOTALL
    )
    updated, found = markers.subn(lambda _: text, current, count=1)
    if not found:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--survey-days", type=float, default=3650.0)
    parser.add_argument("--min-forced", type=int, default=30)
    parser.add_argument("--max-forced", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="tomstream_bench_spectra")
    parser.add_argument("--rebuild", action="store_true", help="drop and load the database again")
    parser.add_argument("--repeat", type=int, default=100, help="ltcv requests (others: half)")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    args = parser.parse_args()
    survey = Survey(args.objects, args.survey_days, args.min_forced, args.max_forced, args.seed)
    base = Settings()
    server_dsn = base.postgres_dsn
    dsn = f"{server_dsn.rpartition('/')[0]}/{args.database}"
    settings = base.model_copy(update={"postgres_dsn": dsn, "mongodb_database": args.database,
                                       "topic_prefix": f"{args.database}-"})  # fmt: skip
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,))
        if args.rebuild or exists.fetchone() is None:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.database}"')
    rows = build(settings, survey, lambda line: print(line, flush=True))
    print(f"rows: {rows}", flush=True)
    warmed = prewarm(dsn)
    print(f"buffers: {warmed}", flush=True)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()[0]
    with api_server(settings) as url:
        ours = measure_api(url, token_for(settings), survey, args.repeat, rng)
    baseline = measure_baseline(settings, survey, args.repeat, rng)
    command = "python bench/spectra_api.py " + " ".join(sys.argv[1:])
    text = section(command, (load_before, os.getloadavg()[0]), survey, rows, warmed, ours, baseline)
    print(text)
    if args.write_docs:
        write_section(text)


if __name__ == "__main__":
    main()

"""Cadences end to end: the faust worker, the fake facility and the sweep as real processes, on
real Kafka and PostgreSQL; the HTTP API through a FastAPI app of our own."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from conftest import Isolated, read_topic
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tomstream.config import Settings
from tomstream.kafka import ensure_topics
from tomstream.services.cadence.config import load_config
from tomstream.services.cadence.http import make_router
from tomstream.services.cadence.service import (
    STATUS_TOPIC,
    TRIGGER_TOPIC,
    NewCadence,
    StatusEvent,
    StopConditions,
    Target,
    Trigger,
    create_cadence,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 120  # a shared 2-core machine: generous


# --------------------------------------------------------------------------------- helpers


def new_cadence(settings: Settings, count: int = 1, **changes: Any) -> list[int]:
    """Create cadences directly (as the HTTP API does); their first requests are enqueued."""
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "facility": "FAKE",
        "parameters": {
            "window": {"start": now.isoformat(), "end": (now + timedelta(hours=2)).isoformat()},
            "exposure_s": 60,
        },
        "target": Target(name="SN 2026abc", ra=150.1, dec=2.2),
        "strategy": "ResumeCadenceAfterFailure",
        "frequency_hours": 0.001,
    }
    fields.update(changes)
    config = load_config()
    with psycopg.connect(settings.postgres_dsn) as conn, conn.transaction():
        return [
            create_cadence(conn, config, NewCadence(**fields), now).cadence_id for _ in range(count)
        ]


def query(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.postgres_dsn) as conn:
        return conn.execute(sql, params).fetchall()


def state(settings: Settings, cadence_id: int) -> tuple[str, str | None]:
    ((found, reason),) = query(
        settings,
        "SELECT state, state_reason FROM dynamic_cadence WHERE cadence_id = %s",
        cadence_id,
    )
    return found, reason


def observations(settings: Settings, cadence_id: int) -> list[tuple[str, int, str | None]]:
    return query(
        settings,
        "SELECT request_id, step, status FROM observation_record WHERE cadence_id = %s "
        "ORDER BY step",
        cadence_id,
    )


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_triggers(settings: Settings, expected: int, settle_s: float = 3.0) -> list[Trigger]:
    """Every trigger on the topic: at least ``expected``, then whatever comes in ``settle_s``."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic(TRIGGER_TOPIC)])
    found: list[Trigger] = []
    deadline = time.monotonic() + TIMEOUT_S
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.3)
            if message is not None and message.error() is None:
                found.append(Trigger.from_avro(message.value()))
                quiet_since = time.monotonic()
            elif len(found) >= expected and time.monotonic() - quiet_since > settle_s:
                break
        return found
    finally:
        consumer.close()


def send_status(settings: Settings, events: list[StatusEvent]) -> None:
    producer = Producer(settings.kafka_client_config())
    for event in events:
        producer.produce(settings.topic(STATUS_TOPIC), event.to_avro(), key=event.request_id)
    assert producer.flush(30) == 0


def status(request_id: str, word: str, **fields: Any) -> StatusEvent:
    return StatusEvent(
        request_id=request_id,
        facility="FAKE",
        observation_id=f"FAKE-{request_id}",
        status=word,
        event_time=fields.pop("event_time", datetime.now(UTC)),
        **fields,
    )


class Processes:
    """``tomstream`` subprocesses of one test, killed at its end; logs kept in tmp_path."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{'-'.join(args[:2])}-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tomstream", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append(process)
        return process

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tomstream", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:]
            for path in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def processes(
    isolated: Callable[[str], Isolated], tmp_path: Path
) -> Iterator[tuple[Settings, Processes]]:
    deployment = isolated("cad")
    ensure_topics(
        deployment.settings,
        [deployment.settings.topic(STATUS_TOPIC), deployment.settings.topic(TRIGGER_TOPIC)],
    )
    running = Processes(deployment.env, tmp_path)
    yield deployment.settings, running
    running.stop_all()
    print(running.log_tail())  # pytest shows it for a failed test only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- with the fake facility


def test_max_observations_3_gives_exactly_3_successes_then_stops(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    running.start("cadence", "run")
    running.start("fake-facility", "--success-rate", "1", "--latency", "0.2", "--seed", "1")
    (cadence_id,) = new_cadence(settings, stop=StopConditions(max_observations=3))

    wait_for("the cadence to finish", lambda: state(settings, cadence_id)[0] == "finished")
    rows = observations(settings, cadence_id)
    assert [(step, word) for _, step, word in rows] == [
        (1, "COMPLETED"),
        (2, "COMPLETED"),
        (3, "COMPLETED"),
    ]
    assert "max_observations" in (state(settings, cadence_id)[1] or "")
    triggers = read_triggers(settings, expected=3)
    assert sorted(t.request_id for t in triggers) == [f"cad{cadence_id}-{s}" for s in (1, 2, 3)]
    assert [t.reason for t in sorted(triggers, key=lambda t: t.request_id)] == [
        "first",
        "advance",
        "advance",
    ]


def test_zero_success_with_max_consecutive_failures_2_stops_after_2_failures(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    running.start("cadence", "run")
    running.start("fake-facility", "--success-rate", "0", "--latency", "0.2")
    (cadence_id,) = new_cadence(settings, stop=StopConditions(max_consecutive_failures=2))

    wait_for("the cadence to stop", lambda: state(settings, cadence_id)[0] == "stopped")
    rows = observations(settings, cadence_id)
    assert len(rows) == 2
    assert all(
        word in {"WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED", "NOT_ATTEMPTED"} for _, _, word in rows
    )
    assert "2 consecutive failures" in (state(settings, cadence_id)[1] or "")
    triggers = read_triggers(settings, expected=2)
    assert [t.reason for t in sorted(triggers, key=lambda t: t.request_id)] == [
        "first",
        "retry-now",
    ]


# ------------------------------------------------------- duplicates and a SIGKILL mid-stream


def test_repeated_events_and_a_sigkill_still_give_one_request_per_step(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    cadences = new_cadence(settings, count=150)
    worker = running.start("cadence", "run")
    steps = 4

    def next_step_count(step: int) -> int:
        sql = "SELECT count(*) FROM observation_record WHERE step = %s"
        return int(query(settings, sql, step)[0][0])

    for step in range(1, steps):
        current = [f"cad{c}-{step}" for c in cadences]
        # Each terminal status three times, with a late PENDING among the copies.
        late = datetime.now(UTC) - timedelta(minutes=1)
        burst = [status(r, "COMPLETED") for r in current]
        send_status(settings, burst + [status(r, "PENDING", event_time=late) for r in current])
        send_status(settings, burst)
        if step == 2:
            # Kill the worker as soon as its first decisions of this step are committed: the
            # events' offsets are not committed yet and triggers may wait in the outbox.
            wait_for("the first decisions of step 2", lambda: next_step_count(3) > 0)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = running.start("cadence", "run")
        send_status(settings, burst)
        wait_for(
            f"step {step + 1} of every cadence",
            lambda step=step: next_step_count(step + 1) == len(cadences),
        )
    per_step = query(
        settings,
        "SELECT cadence_id, step, count(*) FROM observation_record GROUP BY cadence_id, step",
    )
    assert len(per_step) == len(cadences) * steps
    assert {count for _, _, count in per_step} == {1}
    follow_ups = query(settings, "SELECT count(*) FROM cadence_decision WHERE emitted <> '{}'")
    assert follow_ups == [(len(cadences) * steps,)]  # the create decisions + one per step

    triggers = read_triggers(settings, expected=len(cadences) * steps)
    by_id = Counter(t.request_id for t in triggers)
    assert set(by_id) == {f"cad{c}-{s}" for c in cadences for s in range(1, steps + 1)}
    # The outbox publishes at least once: a copy, if any, is the same request.
    for request_id in [r for r, n in by_id.items() if n > 1]:
        copies = {
            t.model_dump_json(exclude={"created_at"})
            for t in triggers
            if t.request_id == request_id
        }
        assert len(copies) == 1


# ------------------------------------------------------------------ sweep, unknown, invalid


def test_sweep_recovers_a_lost_event_once(processes: tuple[Settings, Processes]) -> None:
    settings, running = processes
    running.start("cadence", "run")
    (cadence_id,) = new_cadence(settings)
    # A completion the facility reported but no decision followed (the event was lost after
    # the status was recorded: an older release, a manual fix, a plugin that failed).
    query_update = (
        "UPDATE observation_record SET status = 'COMPLETED', reported_status = 'COMPLETED', "
        "status_time = now() WHERE request_id = %s RETURNING 1"
    )
    assert query(settings, query_update, f"cad{cadence_id}-1") == [(1,)]

    assert "1 request(s) emitted" in running.run("cadence", "sweep")
    assert "0 request(s) emitted" in running.run("cadence", "sweep")
    assert [step for _, step, _ in observations(settings, cadence_id)] == [1, 2]
    triggers = read_triggers(settings, expected=2)
    assert sorted({t.request_id for t in triggers}) == [f"cad{cadence_id}-1", f"cad{cadence_id}-2"]
    history = query(
        settings,
        "SELECT source, outcome FROM cadence_decision WHERE cadence_id = %s ORDER BY decision_id",
        cadence_id,
    )
    assert history == [("create", "emitted"), ("sweep", "emitted")]


def test_unknown_status_is_recorded_and_counted_not_acted_on(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    port = free_port()
    running.start("cadence", "run", env={"TOMSTREAM_METRICS_PORT": str(port)})
    (cadence_id,) = new_cadence(settings)
    send_status(settings, [status(f"cad{cadence_id}-1", "ON_HOLD")])

    def recorded() -> bool:
        return query(
            settings,
            "SELECT count(*) FROM cadence_decision WHERE cadence_id = %s "
            "AND outcome = 'unknown-status'",
            cadence_id,
        ) == [(1,)]

    wait_for("the unknown status to be recorded", recorded)
    assert observations(settings, cadence_id) == [(f"cad{cadence_id}-1", 1, None)]
    assert query(
        settings, "SELECT reported_status FROM observation_record WHERE cadence_id = %s", cadence_id
    ) == [("ON_HOLD",)]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'tomstream_cadence_unknown_status_total{facility="FAKE"} 1.0' in text
    assert state(settings, cadence_id) == ("active", None)


def test_an_undecodable_event_is_dead_lettered_and_the_worker_goes_on(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    running.start("cadence", "run")
    (cadence_id,) = new_cadence(settings)
    producer = Producer(settings.kafka_client_config())
    producer.produce(settings.topic(STATUS_TOPIC), b"\x00not an observation status")
    assert producer.flush(30) == 0
    send_status(settings, [status(f"cad{cadence_id}-1", "COMPLETED")])

    wait_for("the good event after it", lambda: len(observations(settings, cadence_id)) == 2)
    (dead,) = read_topic(settings, settings.topic(STATUS_TOPIC) + ".dlq")
    headers = {key: value.decode() for key, value in dead.headers()}
    assert dead.value() == b"\x00not an observation status"
    assert headers["dlq.source.topic"] == settings.topic(STATUS_TOPIC)
    assert headers["dlq.source.offset"] == "0"
    assert headers["dlq.stage"] == "decode"
    assert headers["dlq.service"] == "cadence"


def test_invalid_parameters_pause_the_cadence_with_the_reason(
    processes: tuple[Settings, Processes],
) -> None:
    settings, running = processes
    worker = running.start("cadence", "run", "--exit-on-idle", "15")
    # The next window would start 400 days on: more than the fake facility accepts.
    (cadence_id,) = new_cadence(settings, frequency_hours=400 * 24)
    send_status(settings, [status(f"cad{cadence_id}-1", "COMPLETED")])

    wait_for("the cadence to pause", lambda: state(settings, cadence_id)[0] == "paused")
    assert "more than 365 days ahead" in (state(settings, cadence_id)[1] or "")
    assert len(observations(settings, cadence_id)) == 1
    assert [t.request_id for t in read_triggers(settings, expected=1)] == [f"cad{cadence_id}-1"]
    assert worker.wait(TIMEOUT_S) == 0  # --exit-on-idle: a clean exit once nothing comes


# ------------------------------------------------------------------------------------ HTTP


def _user() -> str:
    return "tester"


def _connection_to(settings: Settings) -> Callable[[], Iterator[psycopg.Connection]]:
    """A connection per request, in one transaction (the spectrum API lends a pooled one)."""

    def connection() -> Iterator[psycopg.Connection]:
        with psycopg.connect(settings.postgres_dsn) as conn, conn.transaction():
            yield conn

    return connection


@pytest.fixture
def api(isolated: Callable[[str], Isolated]) -> Iterator[tuple[TestClient, Settings]]:
    deployment = isolated("cadapi")
    app = FastAPI()
    app.include_router(make_router(_user, _connection_to(deployment.settings)))
    with TestClient(app) as client:
        yield client, deployment.settings


def _window(hours_from_now: float = 0, length_h: float = 3) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(hours=hours_from_now)
    return {"start": start.isoformat(), "end": (start + timedelta(hours=length_h)).isoformat()}


def test_http_templates_cadences_and_observations(api: tuple[TestClient, Settings]) -> None:
    client, settings = api
    created = client.post(
        "/api/observation-templates",
        json={"name": "nightly r", "facility": "FAKE", "parameters": {"window": _window(1)}},
    )
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    assert [t["id"] for t in client.get("/api/observation-templates").json()] == [template_id]

    response = client.post(
        "/api/cadences",
        json={
            "template_id": template_id,
            "target": {"name": "SN 2026xyz", "ra": 10.5, "dec": -30.25},
            "strategy": "ResumeCadenceAfterFailure",
            "frequency_hours": 72,
            "stop": {"max_observations": 3},
        },
    )
    assert response.status_code == 201, response.text
    cadence = response.json()
    assert cadence["active"] is True
    assert (
        cadence["strategy"]
        == "tomstream.services.cadence.strategies.resume.ResumeCadenceAfterFailure"
    )
    (first,) = cadence["observations"]
    assert first["request_id"] == f"cad{cadence['id']}-1"
    assert [h["outcome"] for h in cadence["history"]] == ["emitted"]
    # The first request is in the outbox, to be published by the worker's relay.
    assert query(settings, "SELECT topic, message_key FROM outbox") == [
        ("cadence-triggers", first["request_id"])
    ]

    listed = client.get("/api/observations", params={"cadence_id": cadence["id"]}).json()
    assert [o["request_id"] for o in listed] == [first["request_id"]]

    stopped = client.post(f"/api/cadences/{cadence['id']}/stop").json()
    assert (stopped["active"], stopped["state"]) == (False, "stopped")
    resumed = client.post(f"/api/cadences/{cadence['id']}/resume").json()
    assert resumed["active"] is True
    assert len(resumed["observations"]) == 1  # nothing terminal yet: nothing new

    copy = client.post(
        "/api/observation-templates/from-observation", json={"request_id": first["request_id"]}
    )
    assert copy.status_code == 201
    assert copy.json()["parameters"]["window"] == first["parameters"]["window"]
    assert client.delete(f"/api/observation-templates/{template_id}").status_code == 204
    assert client.get(f"/api/observation-templates/{template_id}").status_code == 404
    assert client.get(f"/api/cadences/{cadence['id']}").json()["template_id"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"facility": "NOPE", "parameters": {"window": _window()}}, "unknown facility"),
        ({"facility": "FAKE", "parameters": {"exposure_s": 5}}, "window"),
        ({"template_id": 999}, "no observation template 999"),
        ({"facility": "FAKE", "parameters": {"window": _window()}, "strategy": "Nope"}, "Nope"),
        (
            {"facility": "FAKE", "parameters": {"window": _window()}, "target": {"objectid": 5}},
            "no diaobject 5",
        ),
        ({"facility": "FAKE"}, "either template_id"),
        ({"facility": "FAKE", "parameters": {"window": _window(24 * 400)}}, "365 days"),
        ({"facility": "FAKE", "parameters": {"window": _window(), "x": "a\x00b"}}, "NUL"),
        ({"facility": "FAKE", "parameters": {"window": _window()}, "frequency_hours": 1e9}, "less"),
    ],
)
def test_http_bad_input_is_a_400_with_an_error(
    api: tuple[TestClient, Settings], body: dict[str, Any], message: str
) -> None:
    client, _ = api
    payload = {
        "target": {"name": "x", "ra": 1.0, "dec": 2.0},
        "strategy": "ResumeCadenceAfterFailure",
        "frequency_hours": 24,
        **body,
    }
    response = client.post("/api/cadences", json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error"
    assert message in response.json()["error"]


def test_http_unknown_ids_are_404(api: tuple[TestClient, Settings]) -> None:
    client, _ = api
    for method, path in [
        ("get", "/api/cadences/41"),
        ("post", "/api/cadences/41/stop"),
        ("post", "/api/cadences/41/resume"),
        ("get", "/api/observations?cadence_id=41"),
        ("delete", "/api/observation-templates/41"),
    ]:
        response = client.request(method.upper(), path)
        assert response.status_code == 404, path
        assert response.json() == {"status": "error", "error": response.json()["error"]}


def test_http_needs_the_apps_auth(isolated: Callable[[str], Isolated]) -> None:
    from fastapi import HTTPException

    def deny() -> None:
        raise HTTPException(401, "no user")

    app = FastAPI()
    app.include_router(make_router(deny, _connection_to(isolated("cadauth").settings)))
    with TestClient(app) as client:
        assert client.get("/api/cadences").status_code == 401


def test_http_served_by_the_spectrum_api_with_its_auth(
    isolated: Callable[[str], Isolated],
) -> None:
    from tomstream.services.spectra_api.auth import digest, new_token
    from tomstream.services.spectra_api.main import create_app
    from tomstream.services.spectra_api.storage import accounts

    settings = isolated("cadspec").settings
    token = new_token()
    with psycopg.connect(settings.postgres_dsn) as conn, conn.transaction():
        accounts.upsert_user(conn, "observer", None, [])
        user = accounts.find_user(conn, "observer")
        assert user is not None
        accounts.add_token(conn, user.user_id, digest(token))
    bearer = {"Authorization": f"Bearer {token}"}
    body = {
        "facility": "FAKE",
        "parameters": {"window": _window(1)},
        "target": {"name": "SN 2026q", "ra": 200.0, "dec": 10.0},
        "strategy": "RetryFailedObservations",
        "frequency_hours": 24,
    }
    with TestClient(create_app(settings)) as client:
        refused = client.get("/api/cadences")
        assert refused.status_code == 401
        assert refused.json()["status"] == "error"
        created = client.post("/api/cadences", json=body, headers=bearer)
        assert created.status_code == 201, created.text
        cadence_id = created.json()["id"]
        listed = client.get("/api/cadences", headers=bearer).json()
        assert [c["id"] for c in listed] == [cadence_id]
        bad = client.post("/api/cadences", json={**body, "frequency_hours": 0}, headers=bearer)
        assert bad.status_code == 400
        assert "frequency_hours" in bad.json()["error"]
        assert "/api/cadences/{cadence_id}" in client.get("/openapi.json").json()["paths"]

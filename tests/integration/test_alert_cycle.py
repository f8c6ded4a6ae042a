"""The alert cycle on the real ELAsTiCC2 sample, against real Kafka, PostgreSQL and FerretDB.

simulated survey → alert topics → ingest; fake broker → classifications → broker_poll. The
expected numbers are the DESC TOM's own (tests/alertcycle_testbase.py in LSSTDESC/tom_desc).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SHARED, Isolated, Servers, missing_reference, read_topic
from pymongo import MongoClient

from tomstream import avro
from tomstream.config import Settings
from tomstream.kafka import make_producer
from tomstream.shell.stack import Stack

pytestmark = pytest.mark.integration

TOMSTREAM = [sys.executable, "-m", "tomstream"]
SAMPLE = SHARED / "reference" / "samples" / "elasticc2_snana" / "elasticc2_alert_test_data.tar.bz2"
SERVICES = ("ingest", "fakebroker", "broker-poll")

AFTER_60578 = {
    "alerts": 545,
    "raw_alerts": 545,
    "objects": 102,
    "sources": 545,
    "classifiers": 2,
    "broker_messages": 1090,
    "classifications": 11_445,
    "dead_letters": 0,
}
AFTER_100_MORE_DAYS = {
    "alerts": 650,
    "raw_alerts": 650,
    "objects": 131,
    "sources": 650,
    "classifiers": 2,
    "broker_messages": 1300,
    "classifications": 13_650,
    "dead_letters": 0,
}


def tomstream(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*TOMSTREAM, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"tomstream {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def stats(env: dict[str, str]) -> dict[str, int]:
    return json.loads(tomstream(env, "stats", "--json"))


def subset(counts: dict[str, int], keys: dict[str, int]) -> dict[str, int]:
    return {key: counts[key] for key in keys}


class Running:
    """The three services as child processes, like a deployment runs them."""

    def __init__(self, env: dict[str, str], logs: Path, idle_s: float) -> None:
        self.env, self.logs, self.idle_s = env, logs, idle_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.group_ids: dict[str, str] = {}

    def start(self, *names: str) -> None:
        for name in names:
            args = [*TOMSTREAM, name, "--exit-on-idle", str(self.idle_s)]
            if name in self.group_ids:
                args += ["--group-id", self.group_ids[name]]
            log = (self.logs / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(30)

    def alive(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def wait(self, timeout: float = 300) -> None:
        """Until every service exits by itself (idle); each must exit cleanly."""
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            code = proc.wait(max(deadline - time.monotonic(), 1))
            assert code == 0, f"{name} exited with {code}:\n{self.log_tail(name)}"

    def terminate(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        self.wait(60)

    def log_tail(self, name: str) -> str:
        return "\n".join((self.logs / f"{name}.log").read_text().splitlines()[-20:])


@pytest.fixture(scope="module")
def sample() -> Path:
    if not SAMPLE.is_file():
        missing_reference(f"ELAsTiCC2 sample not found: {SAMPLE}")
    return SAMPLE


@pytest.fixture
def loaded(isolated: Callable[[str], Isolated], sample: Path) -> Isolated:
    """A fresh deployment with the sample loaded into the simulation."""
    deployment = isolated("c")
    tomstream(deployment.env, "sim", "load", str(sample))
    return deployment


def wait_until(
    env: dict[str, str], done: Callable[[dict[str, int]], bool], timeout: float = 240
) -> dict[str, int]:
    """Poll the counts until ``done`` says so (or time runs out); return the last counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = stats(env)
        if done(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(1)


@pytest.fixture(scope="module")
def cycle(
    isolated: Callable[[str], Isolated], sample: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The DESC alert-cycle test, run once: both sends, then a replay with new groups."""
    deployment = isolated("cyc")
    env = deployment.env
    logs = tmp_path_factory.mktemp("cycle-logs")
    tomstream(env, "sim", "load", str(sample))
    results: dict[str, dict[str, int]] = {}

    tomstream(env, "sim", "send", "--through-mjd", "60578")
    services = Running(env, logs, idle_s=10)
    services.start(*SERVICES)
    services.wait()
    results["60578"] = stats(env)

    tomstream(env, "sim", "send", "--added-days", "100")
    services.start(*SERVICES)
    services.wait()
    results["+100 days"] = stats(env)

    # A replay: ingest and broker_poll read every topic again from offset 0 in new groups.
    replay = Running(env, logs, idle_s=10)
    replay.group_ids = {"ingest": "replay-ingest", "broker-poll": "replay-broker-poll"}
    replay.start("ingest", "broker-poll")
    replay.wait()
    results["replay"] = stats(env)
    yield {**results, "deployment": deployment}


def test_through_mjd_60578_gives_the_desc_numbers(cycle: dict) -> None:
    assert subset(cycle["60578"], AFTER_60578) == AFTER_60578


def test_one_hundred_more_days_gives_the_desc_numbers(cycle: dict) -> None:
    assert subset(cycle["+100 days"], AFTER_100_MORE_DAYS) == AFTER_100_MORE_DAYS


def test_each_classification_message_is_kept_raw_once(cycle: dict) -> None:
    # The fake broker ran undisturbed, so each message it sent is one row and one raw message.
    for stage in ("60578", "+100 days", "replay"):
        assert cycle[stage]["raw_broker_messages"] == cycle[stage]["broker_messages"], stage


def test_replaying_every_topic_changes_no_count(cycle: dict) -> None:
    assert cycle["replay"] == cycle["+100 days"]


def test_raw_alerts_read_back_byte_identical_to_what_was_produced(cycle: dict) -> None:
    settings: Settings = cycle["deployment"].settings
    produced = {
        avro.decode_alert(message.value()).record["alertId"]: message.value()
        for message in read_topic(settings, settings.topic("alerts-wfd"))
    }
    assert len(produced) == AFTER_100_MORE_DAYS["alerts"]
    with MongoClient(settings.mongodb_uri) as client:
        stored = {
            doc["_id"]: doc["payload"]
            for doc in client[settings.mongodb_database]["alerts"].find({}, {"payload": 1})
        }
    assert stored == produced


def test_sigkill_of_any_service_at_random_points_keeps_counts_exact(
    loaded: Isolated, tmp_path: Path
) -> None:
    env = loaded.env
    rng = random.Random(20261121)
    tomstream(env, "sim", "send", "--through-mjd", "60578")
    services = Running(env, tmp_path, idle_s=20)  # longer than a killed member's session
    services.start(*SERVICES)
    # The rest of the stream arrives while services are being killed and restarted.
    sender = subprocess.Popen(
        [*TOMSTREAM, "sim", "send", "--added-days", "100", "--rate", "30"], env=env
    )
    kills = 0
    while sender.poll() is None or kills < 6:
        time.sleep(rng.uniform(0.2, 1.5))
        victim = rng.choice(SERVICES)
        if victim in services.alive():
            services.kill(victim)
            services.start(victim)
            kills += 1
    assert sender.wait() == 0
    services.wait()
    # A consumer downstream of a killed one may go idle and exit while the killed one's
    # partitions wait out its session timeout; a last pass reads whatever that left.
    services.start(*SERVICES)
    services.wait()
    assert subset(stats(env), AFTER_100_MORE_DAYS) == AFTER_100_MORE_DAYS


def test_undecodable_messages_are_dead_lettered_and_the_rest_stored(
    loaded: Isolated, tmp_path: Path
) -> None:
    env, settings = loaded.env, loaded.settings
    tomstream(env, "sim", "send", "--through-mjd", "60578")
    produce_garbage(settings, settings.topic("alerts-wfd"), count=10)
    services = Running(env, tmp_path, idle_s=10)
    services.start(*SERVICES)
    services.wait()  # every service ran to idle: none died on a bad message
    expected = {**AFTER_60578, "dead_letters": 10}
    assert subset(stats(env), expected) == expected


def produce_garbage(settings: Settings, topic: str, count: int) -> None:
    producer = make_producer(settings)
    for i in range(count):
        producer.produce(topic, f"not an alert {i}".encode() * (i + 1))
    assert producer.flush(30) == 0


@pytest.fixture
def local_stack(servers: Servers) -> Stack:
    if servers.source != "local stack":
        pytest.skip("outage tests stop and start servers: they need the local stack")
    return Stack(Settings())


@pytest.mark.parametrize("server", ["postgres", "ferretdb", "kafka"])
def test_services_ride_out_a_server_outage(
    server: str, loaded: Isolated, local_stack: Stack, tmp_path: Path
) -> None:
    env = loaded.env
    tomstream(env, "sim", "send", "--through-mjd", "60578")
    services = Running(env, tmp_path, idle_s=120)
    services.start(*SERVICES)
    wait_until(env, lambda counts: counts["alerts"] > 0, timeout=60)

    target = next(s for s in local_stack.servers if s.name == server)
    target.process.stop(target.stop_signal)
    downtime = 2 if server == "kafka" else 30  # Kafka: a restart
    time.sleep(downtime)
    assert services.alive() == list(SERVICES), "a service died during the outage"
    local_stack.up(say=lambda _line: None)

    tomstream(env, "sim", "send", "--added-days", "100")
    counts = wait_until(env, lambda c: subset(c, AFTER_100_MORE_DAYS) == AFTER_100_MORE_DAYS)
    assert services.alive() == list(SERVICES)
    services.terminate()
    assert subset(counts, AFTER_100_MORE_DAYS) == AFTER_100_MORE_DAYS
    assert subset(stats(env), AFTER_100_MORE_DAYS) == AFTER_100_MORE_DAYS

"""Real servers for the integration tests, found in this order:

1. settings from the environment (``TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS``,
   ``TOMSTREAM_POSTGRES_DSN``, ``TOMSTREAM_MONGODB_URI`` all set): used as they are;
2. testcontainers, where a Docker engine actually answers a ping;
3. the local stack (``tomstream stack up``), started here if needed and stopped again at the
   end if this session started it.

Under CI (``CI=true``) a server that cannot be had is a failure, never a skip. Each test
session gets its own PostgreSQL database, MongoDB database and topic prefix, so runs never see
each other's data.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from pymongo import MongoClient

from tomstream.config import Settings
from tomstream.storage.migrations import migrate

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SERVER_VARS = (
    "TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS",
    "TOMSTREAM_POSTGRES_DSN",
    "TOMSTREAM_MONGODB_URI",
)


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    postgres_dsn: str
    mongodb_uri: str
    source: str  # "environment", "testcontainers" or "local stack"


def _from_environment() -> Servers | None:
    if not all(os.environ.get(name) for name in SERVER_VARS):
        return None
    return Servers(*(os.environ[name] for name in SERVER_VARS), source="environment")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no engine, no socket, no permission: all mean "not here"
        return False
    return True


def _from_testcontainers(stack: ExitStack) -> Servers | None:
    if not _docker_answers():
        return None
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.postgres import PostgresContainer

    kafka = stack.enter_context(KafkaContainer("apache/kafka:3.9.1").with_kraft())
    postgres = stack.enter_context(PostgresContainer("postgres:16", driver=None))
    mongo = stack.enter_context(MongoDbContainer("mongo:7"))
    return Servers(
        kafka.get_bootstrap_server(),
        postgres.get_connection_url(),
        mongo.get_connection_url(),
        source="testcontainers",
    )


def _from_local_stack(stack: ExitStack) -> Servers:
    from tomstream.shell.stack import Stack

    local = Stack(Settings())
    already_running = all(server.process.running() for server in local.servers)
    local.up(say=lambda line: print(line, flush=True))
    if not already_running and not os.environ.get("TOMSTREAM_TEST_KEEP_STACK"):
        stack.callback(local.down, say=lambda line: print(line, flush=True))
    env = local.env()
    return Servers(*(env[name] for name in SERVER_VARS), source="local stack")


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with ExitStack() as stack:
        try:
            found = _from_environment() or _from_testcontainers(stack) or _from_local_stack(stack)
        except Exception as exc:
            message = f"no Kafka / PostgreSQL / MongoDB for integration tests: {exc}"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        print(f"integration servers from the {found.source}", flush=True)
        yield found


@dataclass(frozen=True)
class Isolated:
    """A deployment of its own on the test servers: database, Mongo database, topic prefix."""

    settings: Settings
    env: dict[str, str]  # for a ``tomstream`` subprocess


def _isolate(servers: Servers, stack: ExitStack, label: str) -> Isolated:
    run_id = f"{label}{uuid.uuid4().hex[:8]}"
    database = f"tomstream_test_{run_id}"
    base_dsn, _, _ = servers.postgres_dsn.rpartition("/")
    with psycopg.connect(servers.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    settings = Settings(
        kafka_bootstrap_servers=servers.kafka_bootstrap,
        postgres_dsn=f"{base_dsn}/{database}",
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=database,
        topic_prefix=f"test-{run_id}-",
    )
    migrate(settings.postgres_dsn)

    def drop() -> None:
        with MongoClient(settings.mongodb_uri) as client:
            client.drop_database(database)
        with psycopg.connect(servers.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    stack.callback(drop)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOMSTREAM_")}
    env.update(
        TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        TOMSTREAM_POSTGRES_DSN=settings.postgres_dsn,
        TOMSTREAM_MONGODB_URI=settings.mongodb_uri,
        TOMSTREAM_MONGODB_DATABASE=settings.mongodb_database,
        TOMSTREAM_TOPIC_PREFIX=settings.topic_prefix,
    )
    return Isolated(settings, env)


@pytest.fixture(scope="session")
def isolated(servers: Servers) -> Iterator[Callable[[str], Isolated]]:
    """A factory of isolated deployments, for tests whose counts must start from zero."""
    with ExitStack() as stack:
        yield lambda label="": _isolate(servers, stack, label)


@pytest.fixture(scope="session")
def session_deployment(isolated: Callable[[str], Isolated]) -> Isolated:
    return isolated("s")


@pytest.fixture(scope="session")
def test_settings(session_deployment: Isolated) -> Settings:
    """Settings for this session's own database, Mongo database and topic prefix."""
    return session_deployment.settings


@pytest.fixture(scope="session")
def service_env(session_deployment: Isolated) -> dict[str, str]:
    """The environment for a ``tomstream`` subprocess that uses ``test_settings``."""
    return session_deployment.env


def missing_reference(message: str) -> None:
    """The read-only reference material (../shared) is missing: a failure under CI."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def read_topic(settings: Settings, topic: str, timeout_s: float = 60) -> list[Message]:
    """Every message in ``topic`` now (all partitions, from the start), as received."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            wanted += high - low
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < wanted and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                messages.append(message)
        return messages
    finally:
        consumer.close()

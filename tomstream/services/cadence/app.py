"""The cadence worker: a faust-streaming app that decides on each observation status event.

One agent reads ``observation-status`` in small batches (up to :data:`BATCH` events or
:data:`WITHIN_S` seconds) and hands each batch to :class:`~services.cadence.service.Decider`
in a worker thread: one PostgreSQL transaction records the statuses, the decisions, their
history and the triggers (outbox). The outbox relay runs in the same process, woken by the
commit's NOTIFY, so a trigger reaches ``cadence-triggers`` within milliseconds.

Delivery is at least once: faust acknowledges a batch's events only after the transaction
committed, and commits offsets every second; events read again after a crash are duplicates
that the decisions recognise. An event that does not decode, or whose decision PostgreSQL
refuses (found by halving the batch), goes to ``observation-status.dlq``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.types import EventT

from tomstream import metrics
from tomstream.config import Settings
from tomstream.consumer import (
    DLQ_SUFFIX,
    BatchHandler,
    BatchStore,
    ConsumerStats,
    DeadLetters,
    Decoded,
    Incoming,
)
from tomstream.kafka import ensure_topics
from tomstream.outbox import OutboxRelay
from tomstream.services.cadence.config import CadenceConfig
from tomstream.services.cadence.service import (
    SERVICE,
    STATUS_TOPIC,
    TRIGGER_TOPIC,
    Decider,
    StatusEvent,
)

log = structlog.get_logger(__name__)

BATCH = 500
WITHIN_S = 0.01  # how long a batch waits to fill: the latency bought for fewer transactions


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    protocol = settings.kafka_security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        )
    return None


def _incoming(event: EventT) -> Incoming:
    message = event.message
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=int(message.timestamp * 1000),
        key=message.key,
        payload=message.value,
        headers=tuple((name, bytes(value)) for name, value in message.headers or ()),
    )


class StatusEvents(BatchHandler[StatusEvent]):
    """The cadence worker's handler: a status event decoded, a batch of them decided."""

    def __init__(self, settings: Settings, config: CadenceConfig) -> None:
        self._decider = Decider(settings, config)

    def decode(self, message: Incoming) -> StatusEvent:
        return StatusEvent.from_avro(message.payload)

    def store(self, batch: Sequence[Decoded[StatusEvent]]) -> None:
        self._decider.handle([item.value for item in batch])

    def close(self) -> None:
        self._decider.close()


class BatchDecisions:
    """Decodes a batch of raw events and decides on it, through the core's batch store (its
    retries, halving and dead letters); runs in a worker thread."""

    def __init__(self, settings: Settings, config: CadenceConfig) -> None:
        self._handler = StatusEvents(settings, config)
        self._stats = ConsumerStats()
        # Never "stopping": a batch faust handed over is decided before the worker stops.
        self._store = BatchStore(
            self._handler, DeadLetters(settings, SERVICE), SERVICE, self._stats, lambda: False
        )

    @property
    def last_activity(self) -> float:
        return self._stats.last_activity

    def __call__(self, messages: Sequence[Incoming]) -> None:
        self._stats.last_activity = time.monotonic()
        self._store.store_until_done(self._store.decode(messages))

    def close(self) -> None:
        self._handler.close()


def create_app(
    settings: Settings, decisions: BatchDecisions, exit_on_idle_s: float | None = None
) -> faust.App:
    """The faust app: the status agent, readiness, and the idle exit (for tests)."""
    app = faust.App(
        f"{settings.topic_prefix}tomstream-{SERVICE}",
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        web_enabled=False,  # /metrics, /healthz and /readyz come from tomstream.metrics
        store="memory://",
        # Nothing is kept on disk (memory store), but faust still makes its data directory:
        # in the temp dir, not in whatever directory the worker was started from.
        datadir=str(Path(tempfile.gettempdir()) / "tomstream-faust-{conf.name}"),
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        producer_acks=-1,
        topic_partitions=1,
    )
    status_topic = app.topic(
        settings.topic(STATUS_TOPIC), value_serializer="raw", key_serializer="raw"
    )

    @app.agent(status_topic)
    async def decide(stream: faust.StreamT[Any]) -> None:
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            messages = [_incoming(event) for event in events]
            metrics.CONSUMED.labels(SERVICE, status_topic.get_topic_name()).inc(len(messages))
            await asyncio.to_thread(decisions, messages)

    @app.on_partitions_assigned.connect
    async def assigned(sender: faust.App, assigned: Any, **_: Any) -> None:
        metrics.READY.set(True)
        log.info("partitions assigned", partitions=sorted(str(tp) for tp in assigned))

    if exit_on_idle_s is not None:

        @app.timer(interval=0.5)
        async def idle_exit() -> None:
            if time.monotonic() - decisions.last_activity > exit_on_idle_s:
                log.info("no event for a while, exiting", idle_s=exit_on_idle_s)
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own clean shutdown

    return app


def run(settings: Settings, config: CadenceConfig, exit_on_idle_s: float | None = None) -> None:
    """Run the worker until SIGTERM / SIGINT (or idle): faust agent + outbox relay + metrics."""
    ensure_topics(
        settings,
        [
            settings.topic(STATUS_TOPIC),
            settings.topic(STATUS_TOPIC) + DLQ_SUFFIX,
            settings.topic(TRIGGER_TOPIC),
        ],
    )
    decisions = BatchDecisions(settings, config)
    app = create_app(settings, decisions, exit_on_idle_s)
    relay = OutboxRelay(settings, poll_s=1.0).start()
    server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    log.info(
        "deciding",
        topic=settings.topic(STATUS_TOPIC),
        triggers=settings.topic(TRIGGER_TOPIC),
        metrics=f"http://{settings.metrics_host}:{server.server_port}/metrics",
    )
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.spinner = None  # faust's terminal spinner would write escape codes into the logs
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    finally:
        metrics.READY.set(False)
        relay.stop()
        decisions.close()
        server.shutdown()

"""The shared batch consumer: consume → decode → store a batch → commit, at least once.

A loop over confluent-kafka's batch ``consume``: each pass takes up to ``batch_size``
messages (or what came within ``batch_time_s``), decodes them, stores them through the
service's handler and only then marks their offsets for commit (committed at most once a
second, at every partition revocation and at shutdown). The store runs in a thread while the
next batch is consumed and decoded; one batch is stored at a time, in order.

* A crash replays at most the uncommitted batches, and handlers write idempotently (keyed on
  natural ids), so a replay never doubles a row.
* A message the handler cannot decode, or whose data a store refuses (isolated by storing
  the batch in halves), goes to ``<topic>.dlq`` with headers naming its source
  topic, partition, offset and the error; the service goes on.
* A store that fails transiently (database or Kafka unreachable) is retried with back-off,
  committing nothing meanwhile (librdkafka keeps the group membership alive for up to
  ``max.poll.interval.ms``, 5 min; a longer outage costs a rejoin and a replay of the batch).
* SIGTERM / SIGINT (and ``exit_on_idle_s``) end the loop after the batch in progress: it is
  stored and committed, or, if its store is being retried, left uncommitted to be read again.

Why not sentry-arroyo's stream processor (which this core used first): it handles one message
per call, and that alone cost ~31 µs per message here (32,000 messages/s with a handler that
does nothing), more than broker_poll's whole budget at 20,000 messages/s.
"""

from __future__ import annotations

import gc
import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

import structlog
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from tomstream import metrics
from tomstream.config import Settings
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer

log = structlog.get_logger(__name__)

T = TypeVar("T")

DLQ_SUFFIX = ".dlq"
COMMIT_INTERVAL_S = 1.0
MAX_RETRY_SLEEP_S = 2.0


# The per-message classes are not frozen: a frozen dataclass sets each field through
# object.__setattr__, which made up a few µs of every message's cost.
@dataclass(slots=True)
class Incoming:
    """One Kafka message as received, with its provenance."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]

    @property
    def timestamp(self) -> datetime | None:
        """The message's Kafka time, if it has one."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC) if self.timestamp_ms else None


@dataclass(slots=True)
class Decoded(Generic[T]):
    message: Incoming
    value: T


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that goes to the dead-letter topic instead of the store."""

    message: Incoming
    stage: str  # "decode" or "store"
    error: str


class BatchHandler(ABC, Generic[T]):
    """What a service plugs into the consumer: how to decode one message, how to store many."""

    #: Exceptions that mean "this message is bad" (dead-lettered), not "the code is broken".
    bad_input: tuple[type[Exception], ...] = (ValueError,)

    @abstractmethod
    def decode(self, message: Incoming) -> T:
        """Turn one message into a value; raise one of ``bad_input`` if it is not valid."""

    @abstractmethod
    def store(self, batch: Sequence[Decoded[T]]) -> None:
        """Write a batch durably and idempotently; return only when it is stored."""

    def is_transient(self, error: Exception) -> bool:
        """True if a failed store should be retried later (a server is unreachable)."""
        return is_transient_error(error)

    def close(self) -> None:
        """Release connections."""


def is_transient_error(error: Exception) -> bool:
    """Connection-level failures of PostgreSQL, MongoDB or Kafka: worth retrying."""
    import psycopg
    import pymongo.errors
    from confluent_kafka import KafkaException

    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(error, pymongo.errors.ConnectionFailure):  # incl. server selection timeouts
        return True
    if isinstance(error, pymongo.errors.BulkWriteError | pymongo.errors.OperationFailure):
        return False
    return isinstance(error, KafkaException | TimeoutError | ConnectionError)


@dataclass
class ConsumerStats:
    consumed: int = 0
    stored: int = 0
    dead_lettered: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    last_loop: float = field(default_factory=time.monotonic)  # the run loop's latest pass
    retrying: bool = False


class DeadLetters:
    """Produces rejected messages to ``<source topic>.dlq``, synchronously (before commit)."""

    def __init__(self, settings: Settings, service: str) -> None:
        self._producer = make_producer(settings)
        self._service = service

    def send(self, rejected: Sequence[Rejected]) -> None:
        deliver(self._producer, (self._dead_letter(item) for item in rejected))

    def _dead_letter(self, item: Rejected) -> Outgoing:
        msg = item.message
        return Outgoing(
            topic=msg.topic + DLQ_SUFFIX,
            value=msg.payload,
            key=msg.key,
            headers=[
                *msg.headers,
                ("dlq.source.topic", msg.topic.encode()),
                ("dlq.source.partition", str(msg.partition).encode()),
                ("dlq.source.offset", str(msg.offset).encode()),
                ("dlq.stage", item.stage.encode()),
                ("dlq.error", item.error.encode(errors="replace")[:4000]),
                ("dlq.service", self._service.encode()),
            ],
        )


class BatchStore:
    """Decodes a consumed batch and stores it: refused messages isolated, dead letters sent.

    The Kafka batch loop below drives it, and so does the cadence worker's faust agent.
    """

    def __init__(
        self,
        handler: BatchHandler[Any],
        dead_letters: DeadLetters,
        service: str,
        stats: ConsumerStats,
        is_stopping: Callable[[], bool],
    ) -> None:
        self._handler = handler
        self._dead_letters = dead_letters
        self._service = service
        self._stats = stats
        self._is_stopping = is_stopping

    def decode(self, batch: Sequence[Incoming]) -> list[Decoded[Any] | Rejected]:
        decode = self._handler.decode
        bad_input = self._handler.bad_input
        items: list[Decoded[Any] | Rejected] = []
        for incoming in batch:
            try:
                items.append(Decoded(incoming, decode(incoming)))
            except bad_input as error:
                items.append(Rejected(incoming, "decode", f"{type(error).__name__}: {error}"))
        return items

    def store_until_done(self, items: Sequence[Decoded[Any] | Rejected]) -> bool:
        """Store the batch, retrying transient failures; False if shutdown came first."""
        good = [item for item in items if isinstance(item, Decoded)]
        undecodable = [item for item in items if isinstance(item, Rejected)]
        sent: set[tuple[str, int, int]] = set()  # dead letters already delivered: not twice
        failures = 0
        started = time.perf_counter()
        while True:
            try:
                refused = self._store(good)
                self._send_dead_letters(undecodable + refused, sent)
                break
            except Exception as error:
                if not self._handler.is_transient(error):
                    raise
                failures += 1
                if not self._back_off(error, failures):
                    return False
        metrics.BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self._service).observe(len(items))
        refused_messages = {id(item.message) for item in refused}
        stored = Counter(
            item.message.topic for item in good if id(item.message) not in refused_messages
        )
        for topic, count in stored.items():
            metrics.STORED.labels(self._service, topic).inc(count)
        self._stats.stored += sum(stored.values())
        self._stats.retrying = False
        self._stats.last_activity = time.monotonic()
        return True

    def _store(self, good: list[Decoded[Any]]) -> list[Rejected]:
        """Store the batch; if the store refuses it, halve it until the refused messages are
        found (a few refused messages cost a few dozen stores, not one per message)."""
        if not good:
            return []
        try:
            self._handler.store(good)
            return []
        except Exception as error:
            if self._handler.is_transient(error):
                raise
            if len(good) == 1:
                log.error("store refused a message", error=repr(error), exc_info=True)
                return [Rejected(good[0].message, "store", f"{type(error).__name__}: {error}")]
            log.warning("store refused a batch; storing it in halves", error=repr(error))
        middle = len(good) // 2
        return self._store(good[:middle]) + self._store(good[middle:])

    def _send_dead_letters(self, rejected: list[Rejected], sent: set[tuple[str, int, int]]) -> None:
        fresh = [
            item
            for item in rejected
            if (item.message.topic, item.message.partition, item.message.offset) not in sent
        ]
        if not fresh:
            return
        self._dead_letters.send(fresh)
        for item in fresh:
            sent.add((item.message.topic, item.message.partition, item.message.offset))
            metrics.DEAD_LETTERED.labels(self._service, item.message.topic).inc()
            metrics.record_error(self._service, f"dead-lettered ({item.stage}): {item.error}")
            log.warning(
                "dead-lettered a message",
                topic=item.message.topic,
                partition=item.message.partition,
                offset=item.message.offset,
                stage=item.stage,
                error=item.error,
            )
        self._stats.dead_lettered += len(fresh)

    def _back_off(self, error: Exception, failures: int) -> bool:
        """Sleep before the next attempt; False if shutdown was asked for meanwhile."""
        self._stats.retrying = True
        metrics.STORE_RETRIES.labels(self._service).inc()
        metrics.record_error(self._service, f"store failed, retrying: {error}")
        delay = min(0.25 * 2 ** (failures - 1), MAX_RETRY_SLEEP_S)
        log.warning(
            "store failed, will retry the batch (nothing committed)",
            error=str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
            attempt=failures,
            retry_in_s=delay,
        )
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self._is_stopping():
                return False
            time.sleep(min(0.1, delay))
        return not self._is_stopping()


def _names(partitions: list[TopicPartition]) -> list[str]:
    return sorted(f"{p.topic}[{p.partition}]" for p in partitions)


def _incoming(message: KafkaMessage) -> Incoming:
    timestamp_type, timestamp_ms = message.timestamp()
    headers = message.headers()
    return Incoming(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=timestamp_ms if timestamp_type != TIMESTAMP_NOT_AVAILABLE else None,
        key=message.key(),
        payload=message.value() or b"",
        headers=tuple((name, data or b"") for name, data in headers) if headers else (),
    )


def default_group_id(settings: Settings, service: str) -> str:
    return f"{settings.topic_prefix}tomstream-{service}"


def subscription(topics: Sequence[str]) -> str:
    """One librdkafka subscription for several topics: a name, or a regex when needed.

    Entries that start with ``^`` are regular expressions (e.g. ALeRCE's daily topics);
    anchor them with ``$`` so they do not also match ``<topic>.dlq``.
    """
    if len(topics) == 1 and not topics[0].startswith("^"):
        return topics[0]
    parts = [t[1:] if t.startswith("^") else re.escape(t) + "$" for t in topics]
    return "^(" + "|".join(f"({part})" for part in parts) + ")"


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer of a service: what it reads, from where, and who handles it."""

    handler: BatchHandler[Any]
    service: str
    topics: Sequence[str]
    group_id: str | None = None
    batch_size: int = 1000
    batch_time_s: float = 0.5
    #: librdkafka settings of the cluster to read from (default: tomstream's own Kafka).
    kafka_config: Mapping[str, Any] | None = None


class _RunningConsumer:
    def __init__(self, spec: ConsumerSpec, settings: Settings, dead_letters: DeadLetters) -> None:
        own_cluster = spec.kafka_config is None
        literal = [t for t in spec.topics if not t.startswith("^")]
        if own_cluster and literal:
            ensure_topics(settings, literal)
        self.spec = spec
        self.group = spec.group_id or default_group_id(settings, spec.service)
        self.stats = ConsumerStats()
        self._stopping = False
        self._batches = BatchStore(
            spec.handler, dead_letters, spec.service, self.stats, lambda: self._stopping
        )
        #: Offsets stored but not yet committed: committed at most once a second.
        self._pending: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self._assignment: set[tuple[str, int]] = set()
        self._storer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.service}-store")
        self._in_flight: tuple[Future[bool], list[Incoming]] | None = None
        self._config: dict[str, Any] = {
            **(settings.kafka_client_config() if own_cluster else spec.kafka_config),
            "group.id": self.group,
            "auto.offset.reset": "earliest",  # a new group reads everything: replay = new group
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "session.timeout.ms": settings.kafka_session_timeout_ms,
            "topic.metadata.refresh.interval.ms": 10_000,  # pick up new topics of a pattern
            "statistics.interval.ms": 5_000,
            "stats_cb": partial(metrics.record_librdkafka_stats, spec.service),
        }

    def run(self) -> None:
        """Consume until stopped; if Kafka trouble stops the consumer, start a new one.

        Nothing is lost that way: what was not committed is simply read again.
        """
        try:
            self._consume_with_restarts()
        finally:
            self._storer.shutdown(wait=True)

    def _consume_with_restarts(self) -> None:
        while not self._stopping:
            consumer = Consumer(dict(self._config))
            try:
                self._consume(consumer)
                return
            except KafkaException as error:
                if self._stopping:
                    return
                log.warning("consumer failed, starting a new one", error=str(error))
                metrics.record_error(self.spec.service, f"consumer restarted: {error}")
                self._pending.clear()  # the new consumer reads them again
                time.sleep(1.0)
            finally:
                self._finish_store(keep_offsets=False)
                consumer.close()

    def _consume(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [subscription(self.spec.topics)],
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        while not self._stopping:
            if self._assignment:  # waiting for partitions is not idling
                self.stats.last_loop = time.monotonic()
            batch = self._received(consumer.consume(self.spec.batch_size, self.spec.batch_time_s))
            items = self._batches.decode(batch)  # while the previous batch is being stored
            if not self._finish_store():
                break  # shutdown while retrying: that batch stays uncommitted
            if items:
                future = self._storer.submit(self._batches.store_until_done, items)
                self._in_flight = (future, batch)
            if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
                self._commit(consumer)
        self._finish_store()
        self._commit(consumer)

    def _finish_store(self, *, keep_offsets: bool = True) -> bool:
        """Wait for the batch being stored; mark its offsets for commit if it was stored.

        One batch is stored (in a thread) while the next is consumed and decoded: decoding
        is the Python work, storing mostly waits on the databases. False if the store gave
        up because of a shutdown.
        """
        if self._in_flight is None:
            return True
        future, batch = self._in_flight
        self._in_flight = None
        stored = future.result()  # a store's own bug (not a transient failure) stops us here
        if stored and keep_offsets:
            for incoming in batch:  # in offset order within a partition: the last wins
                self._pending[incoming.topic, incoming.partition] = incoming.offset + 1
        return stored

    def _received(self, messages: list[KafkaMessage]) -> list[Incoming]:
        batch: list[Incoming] = []
        for message in messages:
            error = message.error()
            if error is None:
                batch.append(_incoming(message))
            elif error.fatal():
                raise KafkaException(error)
            else:  # e.g. a subscribed topic that does not exist yet: librdkafka retries
                log.info("kafka reported", error=str(error))
        if batch:
            self.stats.consumed += len(batch)
            self.stats.last_activity = time.monotonic()
            for topic, count in Counter(incoming.topic for incoming in batch).items():
                metrics.CONSUMED.labels(self.spec.service, topic).inc(count)
        return batch

    def _commit(self, consumer: Consumer) -> None:
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in self._pending.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
        self._pending.clear()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment.update((p.topic, p.partition) for p in partitions)
        self.stats.last_activity = time.monotonic()
        metrics.READY.set(True)
        log.info("partitions assigned", partitions=_names(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called from inside consume(): the batch in flight is finished and committed first.
        self._finish_store()
        self._commit(consumer)
        self._assignment.difference_update((p.topic, p.partition) for p in partitions)
        log.info("partitions revoked", partitions=_names(partitions))

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._finish_store(keep_offsets=False)
        self._pending.clear()  # another member owns them now and reads them again
        self._assignment.difference_update((p.topic, p.partition) for p in partitions)
        log.warning("partitions lost", partitions=_names(partitions))

    def stop(self) -> None:
        self._stopping = True

    def idle_for(self, idle_s: float, now: float) -> bool:
        # Idle means the loop runs freely and finds nothing: not a loop blocked in a slow
        # commit or a store being retried, which would otherwise look the same.
        loop_running = now - self.stats.last_loop < 1.0
        return not self.stats.retrying and loop_running and now - self.stats.last_activity > idle_s


@contextmanager
def collector_tuned_for_batches() -> Iterator[None]:
    """Fewer garbage collections while consuming.

    Decoding makes hundreds of short-lived, acyclic dicts and lists per message, so with the
    default threshold (700 allocations) the collector ran about once per alert: ~10 % of
    ingest's decode loop (measured in memory on the benchmark's alerts). What start-up made is
    frozen, so full collections skip it.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def run_consumers(
    specs: Sequence[ConsumerSpec],
    *,
    settings: Settings,
    exit_on_idle_s: float | None = None,
) -> list[ConsumerStats]:
    """Run consumers until SIGTERM/SIGINT, or until all were idle for ``exit_on_idle_s``.

    One consumer runs in the calling thread; several run in threads of their own, and stop
    together. The process serves /metrics, /healthz and /readyz meanwhile.
    """
    dead_letters = DeadLetters(settings, specs[0].service)
    consumers = [_RunningConsumer(spec, settings, dead_letters) for spec in specs]
    server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    for consumer in consumers:
        log.info(
            "consuming",
            topics=list(consumer.spec.topics),
            group_id=consumer.group,
            metrics=f"http://{settings.metrics_host}:{server.server_port}/metrics",
        )

    def stop_all() -> None:
        for consumer in consumers:
            consumer.stop()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("shutting down", signal=signal.Signals(signum).name)
        stop_all()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    done = threading.Event()
    if exit_on_idle_s is not None:
        threading.Thread(
            target=_watch_idle,
            args=(consumers, exit_on_idle_s, stop_all, done),
            name="idle-watch",
            daemon=True,
        ).start()
    try:
        with collector_tuned_for_batches():
            _run_all(consumers, stop_all)
    finally:
        done.set()
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
        metrics.READY.set(False)
        server.shutdown()
        for consumer in consumers:
            consumer.spec.handler.close()
    for consumer in consumers:
        log.info(
            "stopped",
            topics=list(consumer.spec.topics),
            consumed=consumer.stats.consumed,
            stored=consumer.stats.stored,
            dead_lettered=consumer.stats.dead_lettered,
        )
    return [consumer.stats for consumer in consumers]


def _run_all(consumers: list[_RunningConsumer], stop_all: Callable[[], None]) -> None:
    if len(consumers) == 1:
        consumers[0].run()
        return
    errors: list[BaseException] = []

    def run(consumer: _RunningConsumer) -> None:
        try:
            consumer.run()
        except BaseException as error:  # one consumer failing stops the process
            errors.append(error)
            stop_all()

    threads = [
        threading.Thread(target=run, args=(c,), name=f"consumer-{i}", daemon=True)
        for i, c in enumerate(consumers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join in slices so the main thread still takes signals
            thread.join(0.5)
    if errors:
        raise errors[0]


def run_consumer(
    handler: BatchHandler[Any],
    *,
    settings: Settings,
    service: str,
    topics: Sequence[str],
    group_id: str | None = None,
    batch_size: int = 1000,
    batch_time_s: float = 0.5,
    exit_on_idle_s: float | None = None,
) -> ConsumerStats:
    """Run one consumer of our own Kafka (see :func:`run_consumers`); return its counts."""
    spec = ConsumerSpec(handler, service, topics, group_id, batch_size, batch_time_s)
    return run_consumers([spec], settings=settings, exit_on_idle_s=exit_on_idle_s)[0]


def _watch_idle(
    consumers: list[_RunningConsumer],
    idle_s: float,
    stop_all: Callable[[], None],
    done: threading.Event,
) -> None:
    while not done.wait(0.2):
        now = time.monotonic()
        if all(consumer.idle_for(idle_s, now) for consumer in consumers):
            log.info("no message for a while, exiting", idle_s=idle_s)
            stop_all()
            return

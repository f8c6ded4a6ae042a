"""The shared batch consumer: consume → decode → store a batch → commit, at least once.

Built on sentry-arroyo's stream processor, with this chain of steps per assignment::

    decode (RunTask) → BatchStep → StoreBatch → CommitOffsets

* Offsets are committed only after ``StoreBatch`` returned, i.e. after the handler's writes
  are durable; a crash replays at most the uncommitted batches, and handlers write
  idempotently (keyed on natural ids), so a replay never doubles a row.
* A message the handler cannot decode, or whose data a store refuses (isolated by storing
  the batch's messages one by one), goes to ``<topic>.dlq`` with headers naming its source
  topic, partition, offset and the error; the service goes on.
* A store that fails transiently (database or Kafka unreachable) raises arroyo's
  ``MessageRejected``: arroyo pauses consumption and retries the same batch, committing
  nothing meanwhile.
* SIGTERM / SIGINT (and ``exit_on_idle_s``) ask arroyo to shut down: the batch in progress is
  stored and committed if that succeeds within the join timeout, else left uncommitted, to be
  consumed again on restart.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import structlog
from arroyo.backends.kafka import KafkaConsumer, KafkaPayload
from arroyo.errors import ConsumerError as ArroyoConsumerError
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import (
    BatchStep,
    CommitOffsets,
    MessageRejected,
    ProcessingStrategy,
    ProcessingStrategyFactory,
    RunTask,
)
from arroyo.types import BrokerValue, Commit, Message, Partition, Topic
from confluent_kafka import KafkaException

from tomstream import metrics
from tomstream.config import Settings
from tomstream.kafka import Outgoing, deliver, ensure_topics, make_producer

log = structlog.get_logger(__name__)

T = TypeVar("T")

DLQ_SUFFIX = ".dlq"
JOIN_TIMEOUT_S = 20.0
MAX_RETRY_SLEEP_S = 2.0


@dataclass(frozen=True, slots=True)
class Incoming:
    """One Kafka message as received, with its provenance."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True)
class _Context:
    """What every step of one consumer's pipeline shares."""

    handler: BatchHandler[Any]
    dead_letters: DeadLetters
    service: str
    stats: ConsumerStats


class StoreBatch(ProcessingStrategy[Sequence[BrokerValue[Decoded[Any] | Rejected]]]):
    """Stores a batch through the handler, dead-letters what it must, then passes it on."""

    def __init__(self, context: _Context, next_step: ProcessingStrategy[Any]) -> None:
        self._handler = context.handler
        self._dead_letters = context.dead_letters
        self._service = context.service
        self._stats = context.stats
        self._next = next_step
        self._failures = 0
        # Dead letters already delivered for the batch being retried: not sent twice.
        self._sent: set[tuple[str, int, int]] = set()

    def submit(self, message: Message[Sequence[BrokerValue[Decoded[Any] | Rejected]]]) -> None:
        items = [value.payload for value in message.payload]
        good = [item for item in items if isinstance(item, Decoded)]
        undecodable = [item for item in items if isinstance(item, Rejected)]
        started = time.perf_counter()
        try:
            refused = self._store(good)
            self._send_dead_letters(undecodable + refused)
        except Exception as error:
            if not self._handler.is_transient(error):
                raise
            self._back_off(error)
            raise MessageRejected from error
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
        self._failures = 0
        self._sent.clear()
        self._next.submit(message)

    def _store(self, good: list[Decoded[Any]]) -> list[Rejected]:
        """Store the batch; if the store refuses it, find the refused messages one by one."""
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
            log.warning("store refused a batch; storing it message by message", error=repr(error))
        return [rejected for item in good for rejected in self._store([item])]

    def _send_dead_letters(self, rejected: list[Rejected]) -> None:
        fresh = [
            item
            for item in rejected
            if (item.message.topic, item.message.partition, item.message.offset) not in self._sent
        ]
        if not fresh:
            return
        self._dead_letters.send(fresh)
        for item in fresh:
            self._sent.add((item.message.topic, item.message.partition, item.message.offset))
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

    def _back_off(self, error: Exception) -> None:
        self._failures += 1
        self._stats.retrying = True
        metrics.STORE_RETRIES.labels(self._service).inc()
        metrics.record_error(self._service, f"store failed, retrying: {error}")
        delay = min(0.25 * 2 ** (self._failures - 1), MAX_RETRY_SLEEP_S)
        log.warning(
            "store failed, will retry the batch (nothing committed)",
            error=str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
            attempt=self._failures,
            retry_in_s=delay,
        )
        time.sleep(delay)

    def poll(self) -> None:
        self._stats.last_loop = time.monotonic()
        self._next.poll()

    def join(self, timeout: float | None = None) -> None:
        self._next.join(timeout)

    def close(self) -> None:
        self._next.close()

    def terminate(self) -> None:
        self._next.terminate()


def _decode_step(context: _Context, message: Message[KafkaPayload]) -> Decoded[Any] | Rejected:
    value = message.value
    assert isinstance(value, BrokerValue)
    payload = value.payload
    incoming = Incoming(
        topic=value.partition.topic.name,
        partition=value.partition.index,
        offset=value.offset,
        timestamp_ms=int(value.timestamp.timestamp() * 1000) if value.timestamp else None,
        key=payload.key,
        payload=payload.value,
        headers=tuple((name, bytes(data)) for name, data in payload.headers),
    )
    context.stats.consumed += 1
    context.stats.last_activity = time.monotonic()
    metrics.CONSUMED.labels(context.service, incoming.topic).inc()
    try:
        return Decoded(incoming, context.handler.decode(incoming))
    except context.handler.bad_input as error:
        return Rejected(incoming, "decode", f"{type(error).__name__}: {error}")


class _Factory(ProcessingStrategyFactory[KafkaPayload]):
    def __init__(self, context: _Context, batch_size: int, batch_time_s: float) -> None:
        self._context = context
        self._batch_size = batch_size
        self._batch_time_s = batch_time_s

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[KafkaPayload]:
        metrics.READY.set(True)
        log.info(
            "partitions assigned",
            partitions=sorted(f"{p.topic.name}[{p.index}]" for p in partitions),
        )
        store = StoreBatch(self._context, CommitOffsets(commit))
        batch = BatchStep(
            max_batch_size=self._batch_size, max_batch_time=self._batch_time_s, next_step=store
        )
        return RunTask(partial(_decode_step, self._context), batch)


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
        self._dead_letters = dead_letters
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
        self.processor = self._new_processor()

    def _new_processor(self) -> StreamProcessor[KafkaPayload]:
        return StreamProcessor(
            KafkaConsumer(dict(self._config)),
            Topic(subscription(self.spec.topics)),
            _Factory(
                _Context(self.spec.handler, self._dead_letters, self.spec.service, self.stats),
                self.spec.batch_size,
                self.spec.batch_time_s,
            ),
            join_timeout=JOIN_TIMEOUT_S,
        )

    def run(self) -> None:
        """Run the processor; if Kafka trouble stops it, start a new one.

        Nothing is lost that way: what was not committed is simply read again.
        """
        while not self._stopping:
            try:
                self.processor.run()
                return
            except (KafkaException, ArroyoConsumerError) as error:
                if self._stopping:
                    return
                log.warning("consumer failed, starting a new one", error=str(error))
                metrics.record_error(self.spec.service, f"consumer restarted: {error}")
                time.sleep(1.0)
                self.processor = self._new_processor()

    def stop(self) -> None:
        self._stopping = True
        self.processor.signal_shutdown()

    def idle_for(self, idle_s: float, now: float) -> bool:
        # Idle means the loop runs freely and finds nothing: not a loop blocked in a slow
        # commit or a store being retried, which would otherwise look the same.
        loop_running = now - self.stats.last_loop < 1.0
        return not self.stats.retrying and loop_running and now - self.stats.last_activity > idle_s


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

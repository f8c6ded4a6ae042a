"""The cadence service's decisions: status event → strategy → stop conditions → validation →
trigger.

The pure part (:func:`apply_event`, :func:`evaluate`) takes rows and a time and returns what to
write; it has no I/O and no clock, so unit tests drive it with any ``now``. :class:`Decider`
runs it inside one PostgreSQL transaction per batch: it locks the cadences concerned, reads
their observations, decides, and writes the status updates, the new observation records, the
history rows and the triggers (through the transactional outbox) together. So:

* a status event delivered twice is recognised (same status already recorded) and ignored;
* an event older than the status recorded, or any event after a terminal status, is stale;
* a crash before the commit leaves nothing, and the event is read again and decided the same
  way; a crash after it leaves the trigger in the outbox, published by the relay later;
* request ids are deterministic (``cad<cadence id>-<step>``) and an observation can be
  followed up only once (unique constraints), so no step is ever requested twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import takewhile
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Histogram
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from tomstream import avro
from tomstream.config import Settings
from tomstream.services.cadence import storage
from tomstream.services.cadence.config import CadenceConfig
from tomstream.services.cadence.facilities import Facility, InvalidParameters, Outcome, Window
from tomstream.services.cadence.storage import CadenceRow, HistoryRow, ObservationRow, Writes
from tomstream.services.cadence.strategies import (
    CadenceStrategy,
    CadenceView,
    Observation,
    StrategyResult,
)
from tomstream.services.cadence.strategies.base import Anchor, Reason
from tomstream.storage.postgres import Postgres

log = structlog.get_logger(__name__)

SERVICE = "cadence"
STATUS_TOPIC = "observation-status"
TRIGGER_TOPIC = "cadence-triggers"
STATUS_SCHEMA = "tomstream.cadence.observationStatus"
TRIGGER_SCHEMA = "tomstream.cadence.cadenceTrigger"

EVENTS = Counter(
    "tomstream_cadence_status_events_total",
    "Observation status events by what they did: applied, duplicate, stale, unknown_status "
    "(recorded, not acted on) or unknown_request (no such observation)",
    ["outcome"],
)
UNKNOWN_STATUS = Counter(
    "tomstream_cadence_unknown_status_total",
    "Status events whose word the facility's status map does not know",
    ["facility"],
)
DECISIONS = Counter(
    "tomstream_cadence_decisions_total",
    "Cadence decisions by outcome (emitted, waiting, finished, stopped, paused, inactive, error)",
    ["outcome"],
)
TRIGGERS = Counter(
    "tomstream_cadence_triggers_total", "Observation requests enqueued, by reason", ["reason"]
)
DECIDE_SECONDS = Histogram(
    "tomstream_cadence_decide_seconds",
    "Time to decide and commit one batch of status events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def request_id_for(cadence_id: int, step: int) -> str:
    """The deterministic id of a cadence's step: the idempotency key of its trigger."""
    return f"cad{cadence_id}-{step}"


# ---------------------------------------------------------------------------------- messages


class StatusEvent(BaseModel):
    """An ``observation-status`` message."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    request_id: str = Field(alias="requestId", min_length=1)
    facility: str
    observation_id: str | None = Field(None, alias="observationId")
    status: str = Field(min_length=1)
    scheduled_start: AwareDatetime | None = Field(None, alias="scheduledStart")
    scheduled_end: AwareDatetime | None = Field(None, alias="scheduledEnd")
    event_time: AwareDatetime = Field(alias="eventTime")
    user_cancel: bool = Field(False, alias="userCancel")

    @classmethod
    def from_avro(cls, payload: bytes) -> StatusEvent:
        """Decode one message; DecodeError or ValidationError (both ValueErrors) if invalid."""
        return cls.model_validate(avro.decode(STATUS_SCHEMA, payload))

    def to_avro(self) -> bytes:
        return avro.encode(STATUS_SCHEMA, self.model_dump(by_alias=True))


class Target(BaseModel):
    """What to observe: a DIA object, or a name and a position (degrees)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    objectid: int | None = Field(None, alias="objectId")
    name: str | None = None
    ra: float | None = Field(None, ge=0, lt=360)
    dec: float | None = Field(None, ge=-90, le=90)


class Trigger(BaseModel):
    """A ``cadence-triggers`` message: one new observation request."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    cadence_id: int
    facility: str
    target: Target
    observation_type: str
    parameters: dict[str, Any]
    window: Window
    reason: Reason
    created_at: AwareDatetime

    def to_avro(self) -> bytes:
        return avro.encode(
            TRIGGER_SCHEMA,
            {
                "requestId": self.request_id,
                "cadenceId": self.cadence_id,
                "facility": self.facility,
                "target": self.target.model_dump(by_alias=True),
                "observationType": self.observation_type,
                "parameters": json.dumps(self.parameters, sort_keys=True),
                "windowStart": self.window.start,
                "windowEnd": self.window.end,
                "reason": self.reason,
                "createdAt": self.created_at,
            },
        )

    @classmethod
    def from_avro(cls, payload: bytes) -> Trigger:
        record = avro.decode(TRIGGER_SCHEMA, payload)
        return cls(
            request_id=record["requestId"],
            cadence_id=record["cadenceId"],
            facility=record["facility"],
            target=Target.model_validate(record["target"]),
            observation_type=record["observationType"],
            parameters=json.loads(record["parameters"]),
            window=Window(start=record["windowStart"], end=record["windowEnd"]),
            reason=record["reason"],
            created_at=record["createdAt"],
        )


class StopConditions(BaseModel):
    """When a cadence ends by itself (besides a user's stop or cancel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_observations: PositiveInt | None = Field(
        None, description="finished after this many successful observations"
    )
    max_consecutive_failures: PositiveInt | None = Field(
        None, description="stopped after this many failures in a row"
    )
    end_time: AwareDatetime | None = Field(None, description="no window starts at or after it")


class NewCadence(BaseModel):
    """A cadence to create (the HTTP API resolves templates and targets into this)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    facility: str
    observation_type: str = "IMAGING"
    parameters: dict[str, Any]
    target: Target
    strategy: str
    frequency_hours: PositiveFloat
    anchor: Anchor = "requested"
    options: dict[str, Any] = {}
    stop: StopConditions = StopConditions()
    template_id: int | None = None


# ------------------------------------------------------------------------------- pure logic


class EventEffect(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNKNOWN_STATUS = "unknown_status"


def apply_event(
    observation: ObservationRow, event: StatusEvent, facility: Facility
) -> tuple[EventEffect, ObservationRow]:
    """What a status event does to its observation record.

    The same word again is a duplicate; an event older than the latest applied one, or any
    change after a terminal status, is stale (a terminal status is final); a word the facility
    does not know is recorded as reported but changes nothing else.
    """
    same_observation = event.observation_id in (None, observation.observation_id)
    if event.status == observation.reported_status and same_observation:
        return EventEffect.DUPLICATE, observation
    if observation.status_time is not None and event.event_time < observation.status_time:
        return EventEffect.STALE, observation
    if facility.statuses.classify(observation.status).terminal:
        return EventEffect.STALE, observation
    reported = replace(
        observation,
        reported_status=event.status,
        observation_id=event.observation_id or observation.observation_id,
    )
    if facility.statuses.classify(event.status) is Outcome.UNKNOWN:
        return EventEffect.UNKNOWN_STATUS, reported
    return EventEffect.APPLIED, replace(
        reported,
        status=event.status,
        status_time=event.event_time,
        scheduled_start=event.scheduled_start or observation.scheduled_start,
        scheduled_end=event.scheduled_end or observation.scheduled_end,
        user_cancel=event.user_cancel,
    )


@dataclass(frozen=True)
class Evaluation:
    """A decision: its outcome, why, the cadence's new state and the requests to emit."""

    outcome: str  # emitted, waiting, finished, stopped, paused, inactive, error
    detail: str
    state: str | None = None  # the cadence's new state, if it changes
    requests: tuple[ObservationRow, ...] = ()


def strategy_view(
    cadence: CadenceRow,
    observations: Sequence[ObservationRow],
    facility: Facility,
    now: datetime,
) -> CadenceView:
    followed = {obs.follows for obs in observations if obs.follows}
    return CadenceView(
        cadence_id=cadence.cadence_id,
        frequency=timedelta(hours=cadence.frequency_hours),
        anchor="actual" if cadence.anchor == "actual" else "requested",
        observations=tuple(
            Observation(
                request_id=obs.request_id,
                step=obs.step,
                outcome=(outcome := facility.statuses.classify(obs.status)),
                requested=Window(start=obs.requested_start, end=obs.requested_end),
                observed_at=(obs.scheduled_start or obs.status_time) if outcome.terminal else None,
                followed_up=obs.request_id in followed,
                status=obs.status,
            )
            for obs in observations
        ),
        now=now,
        options=cadence.options,
    )


def stop_condition(
    stop: StopConditions, view: CadenceView, now: datetime
) -> tuple[str, str] | None:
    """``(new state, reason)`` if a stop condition holds."""
    outcomes = [obs.outcome for obs in view.observations if obs.outcome.terminal]
    successes = outcomes.count(Outcome.SUCCEEDED)
    if stop.max_observations is not None and successes >= stop.max_observations:
        return "finished", f"max_observations reached: {successes} successful observations"
    failures = sum(1 for _ in takewhile(lambda o: o is Outcome.FAILED, reversed(outcomes)))
    if stop.max_consecutive_failures is not None and failures >= stop.max_consecutive_failures:
        return "stopped", f"{failures} consecutive failures (max_consecutive_failures reached)"
    if stop.end_time is not None and now >= stop.end_time:
        return "finished", f"end_time {stop.end_time.isoformat()} passed"
    return None


def evaluate(
    cadence: CadenceRow,
    observations: Sequence[ObservationRow],
    strategy: CadenceStrategy,
    facility: Facility,
    now: datetime,
) -> Evaluation:
    """Decide what a cadence does next, from its observations (step order) at time ``now``."""
    if cadence.state != "active":
        return Evaluation("inactive", f"cadence is {cadence.state}: nothing emitted")
    view = strategy_view(cadence, observations, facility, now)
    canceled = [
        obs
        for obs in observations
        if obs.user_cancel and facility.statuses.classify(obs.status) is Outcome.FAILED
    ]
    if canceled:
        return Evaluation(
            "stopped", f"{canceled[-1].request_id} was canceled by a user", state="stopped"
        )
    try:
        result = strategy.decide(view)
    except Exception as error:  # a plugin's bug: recorded, and the sweep tries again later
        log.exception("strategy failed", cadence_id=cadence.cadence_id, strategy=cadence.strategy)
        return Evaluation("error", f"strategy {cadence.strategy} failed: {error!r}")
    if result.finished:
        return Evaluation("finished", result.note, state="finished")
    stop = StopConditions.model_validate(cadence.stop_conditions)
    stopped = stop_condition(stop, view, now)
    if stopped:
        return Evaluation(stopped[0], stopped[1], state=stopped[0])
    return _requests(cadence, observations, facility, result, stop, now)


def _requests(
    cadence: CadenceRow,
    observations: Sequence[ObservationRow],
    facility: Facility,
    result: StrategyResult,
    stop: StopConditions,
    now: datetime,
) -> Evaluation:
    proposals = [
        p for p in result.proposals if stop.end_time is None or p.window.start < stop.end_time
    ]
    if not proposals:
        if result.proposals:
            return Evaluation("finished", "the next window starts after end_time", "finished")
        return Evaluation("waiting", result.note)
    by_id = {obs.request_id: obs for obs in observations}
    last_step = max(obs.step for obs in observations)
    requests = []
    for index, proposal in enumerate(proposals, start=1):
        followed = by_id[proposal.follows]
        try:
            parameters = facility.validate(
                facility.with_window(followed.parameters, proposal.window), now
            )
        except InvalidParameters as error:
            return Evaluation("paused", f"{result.note}; not submitted: {error}", "paused")
        step = last_step + index
        requests.append(
            ObservationRow(
                request_id=request_id_for(cadence.cadence_id, step),
                group_id=cadence.group_id,
                cadence_id=cadence.cadence_id,
                step=step,
                follows=proposal.follows,
                reason=proposal.reason,
                facility=cadence.facility,
                observation_type=cadence.observation_type,
                parameters=parameters,
                requested_start=proposal.window.start,
                requested_end=proposal.window.end,
            )
        )
    return Evaluation("emitted", result.note, requests=tuple(requests))


def trigger_for(cadence: CadenceRow, request: ObservationRow, now: datetime) -> Trigger:
    return Trigger(
        request_id=request.request_id,
        cadence_id=cadence.cadence_id,
        facility=request.facility,
        target=Target.model_validate(cadence.target),
        observation_type=request.observation_type,
        parameters=request.parameters,
        window=Window(start=request.requested_start, end=request.requested_end),
        reason=request.reason,  # type: ignore[arg-type]  # checked by the table's constraint
        created_at=now,
    )


# ------------------------------------------------------------------------------ transactions


class _Batch:
    """The cadences of one transaction, their observations, and what is to be written."""

    def __init__(
        self,
        config: CadenceConfig,
        cadences: dict[int, CadenceRow],
        observations: dict[int, list[ObservationRow]],
        now: datetime,
    ) -> None:
        self.config = config
        self.cadences = cadences
        self.observations = observations
        self.now = now
        self.writes = Writes()

    def facility(self, cadence_id: int) -> Facility:
        return self.config.facility(self.cadences[cadence_id].facility)

    def update(self, row: ObservationRow) -> None:
        rows = self.observations[row.cadence_id]
        rows[[r.request_id for r in rows].index(row.request_id)] = row
        self.writes.updated[row.request_id] = row

    def decide(self, cadence_id: int, source: str, event: StatusEvent | None = None) -> Evaluation:
        """Evaluate a cadence now and record the decision (state, history, requests)."""
        cadence = self.cadences[cadence_id]
        try:
            strategy = self.config.strategies.get(cadence.strategy)
            facility = self.config.facility(cadence.facility)
        except ValueError as error:  # incl. StrategyError: no longer configured
            evaluation = Evaluation("paused", str(error), "paused")
        else:
            evaluation = evaluate(
                cadence, self.observations[cadence_id], strategy, facility, self.now
            )
        self.record(cadence_id, source, evaluation, event)
        return evaluation

    def record(
        self,
        cadence_id: int,
        source: str,
        evaluation: Evaluation,
        event: StatusEvent | None = None,
    ) -> None:
        cadence = self.cadences[cadence_id]
        updated = replace(
            cadence,
            state=evaluation.state or cadence.state,
            state_reason=evaluation.detail if evaluation.state else cadence.state_reason,
            last_decision=f"{evaluation.outcome}: {evaluation.detail}",
            last_decision_at=self.now,
        )
        self.cadences[cadence_id] = updated
        self.writes.cadences[cadence_id] = updated
        for request in evaluation.requests:
            self.observations[cadence_id].append(request)
            self.writes.inserted.append(request)
            trigger = trigger_for(updated, request, self.now)
            self.writes.triggers.append(
                storage.OutgoingTrigger(request.request_id, trigger.to_avro())
            )
            TRIGGERS.labels(request.reason).inc()
        self.writes.history.append(
            HistoryRow(
                cadence_id=cadence_id,
                source=source,
                outcome=evaluation.outcome,
                detail=evaluation.detail,
                request_id=event.request_id if event else None,
                event=event.model_dump(mode="json") if event else None,
                emitted=tuple(request.request_id for request in evaluation.requests),
            )
        )
        DECISIONS.labels(evaluation.outcome).inc()


def _open_batch(
    conn: psycopg.Connection, config: CadenceConfig, cadence_ids: Sequence[int], now: datetime
) -> _Batch:
    cadences = storage.lock_cadences(conn, cadence_ids)
    observations = storage.observations_of(conn, cadences, for_decisions=True)
    return _Batch(config, cadences, observations, now)


@dataclass
class SweepReport:
    examined: int = 0
    emitted: int = 0
    ended: int = 0


class Decider:
    """Decides on status events and sweeps, with its own PostgreSQL connection."""

    def __init__(
        self,
        settings: Settings,
        config: CadenceConfig,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = Postgres(settings.postgres_dsn, application_name=f"tomstream-{SERVICE}")
        self._config = config
        self._clock = clock

    def handle(self, events: Sequence[StatusEvent]) -> list[EventEffect | None]:
        """Apply a batch of status events and decide, in one transaction; return each event's
        effect (None: no such observation)."""
        started = time.perf_counter()
        effects: list[EventEffect | None] = []
        with self._db.transaction() as conn:
            owners = storage.cadence_ids_of_requests(conn, [e.request_id for e in events])
            batch = _open_batch(conn, self._config, sorted(set(owners.values())), self._clock())
            for event in events:
                effects.append(self._apply(batch, owners.get(event.request_id), event))
            storage.write(conn, batch.writes)
        DECIDE_SECONDS.observe(time.perf_counter() - started)
        return effects

    def _apply(
        self, batch: _Batch, cadence_id: int | None, event: StatusEvent
    ) -> EventEffect | None:
        if cadence_id is None or cadence_id not in batch.cadences:
            EVENTS.labels("unknown_request").inc()
            log.warning("status event for an unknown request", request_id=event.request_id)
            return None
        current = next(
            o for o in batch.observations[cadence_id] if o.request_id == event.request_id
        )
        try:
            facility = batch.facility(cadence_id)
        except ValueError as error:  # its facility left the configuration: pause, do not guess
            batch.record(cadence_id, "event", Evaluation("paused", str(error), "paused"), event)
            return None
        effect, updated = apply_event(current, event, facility)
        EVENTS.labels(effect.value).inc()
        if effect in (EventEffect.DUPLICATE, EventEffect.STALE):
            return effect
        batch.update(updated)
        if effect is EventEffect.UNKNOWN_STATUS:
            UNKNOWN_STATUS.labels(facility.name).inc()
            batch.record(
                cadence_id,
                "event",
                Evaluation(
                    "unknown-status",
                    f"status {event.status!r} is not in {facility.name}'s status map: "
                    "recorded, not acted on",
                ),
                event,
            )
            return effect
        batch.decide(cadence_id, "event", event)
        return effect

    def sweep(self, chunk: int = 200) -> SweepReport:
        """Re-evaluate active cadences whose latest observation is terminal but not followed up
        (an event that never led to a decision) or whose end_time passed. Safe at any time,
        alongside the stream: decisions are made under the same locks and constraints."""
        report = SweepReport()
        terminal = sorted(
            {
                word
                for facility in self._config.facilities.values()
                for word in facility.statuses.success | facility.statuses.failed
            }
        )
        with self._db.transaction() as conn:
            candidates = storage.sweep_candidates(conn, terminal)
        for first in range(0, len(candidates), chunk):
            with self._db.transaction() as conn:
                batch = _open_batch(
                    conn, self._config, candidates[first : first + chunk], self._clock()
                )
                for cadence_id, cadence in list(batch.cadences.items()):
                    if cadence.state != "active":
                        continue  # stopped since the candidates were listed
                    evaluation = batch.decide(cadence_id, "sweep")
                    report.examined += 1
                    report.emitted += len(evaluation.requests)
                    report.ended += evaluation.state in ("finished", "stopped", "paused")
                storage.write(conn, batch.writes)
        return report

    def close(self) -> None:
        self._db.close()


# ------------------------------------------------------------------------------- operations


class CadenceNotFound(LookupError):
    """No cadence with that id (the HTTP API answers 404)."""


def create_cadence(
    conn: psycopg.Connection, config: CadenceConfig, new: NewCadence, now: datetime
) -> CadenceRow:
    """Create a cadence and enqueue its first request, in the caller's transaction.

    Raises ValueError (StrategyError, InvalidParameters) for input the configuration refuses.
    """
    strategy = config.strategies.resolve(new.strategy)
    facility = config.facility(new.facility)
    window = facility.window(new.parameters)
    window = window.starting_at(max(window.start, now))  # a window already begun starts now
    if new.stop.end_time is not None and window.start >= new.stop.end_time:
        raise InvalidParameters("the first window starts after the cadence's end_time")
    parameters = facility.validate(facility.with_window(new.parameters, window), now)
    group_id = storage.new_group(conn, f"cadence of {new.target.name or new.target.objectid}")
    cadence = storage.insert_cadence(
        conn,
        {
            "group_id": group_id,
            "template_id": new.template_id,
            "strategy": strategy,
            "facility": facility.name,
            "observation_type": new.observation_type,
            "target": new.target.model_dump(),
            "parameters": parameters,
            "frequency_hours": new.frequency_hours,
            "anchor": new.anchor,
            "options": new.options,
            "stop_conditions": new.stop.model_dump(mode="json", exclude_none=True),
        },
    )
    first = ObservationRow(
        request_id=request_id_for(cadence.cadence_id, 1),
        group_id=group_id,
        cadence_id=cadence.cadence_id,
        step=1,
        follows=None,
        reason="first",
        facility=facility.name,
        observation_type=new.observation_type,
        parameters=parameters,
        requested_start=window.start,
        requested_end=window.end,
    )
    batch = _Batch(config, {cadence.cadence_id: cadence}, {cadence.cadence_id: []}, now)
    batch.record(
        cadence.cadence_id, "create", Evaluation("emitted", "first request", requests=(first,))
    )
    storage.write(conn, batch.writes)
    return batch.cadences[cadence.cadence_id]


def stop_cadence(conn: psycopg.Connection, config: CadenceConfig, cadence_id: int) -> CadenceRow:
    """A user's stop: the cadence emits nothing more until resumed."""
    batch = _open_batch(conn, config, [cadence_id], utcnow())
    cadence = batch.cadences.get(cadence_id)
    if cadence is None:
        raise CadenceNotFound(f"no cadence {cadence_id}")
    if cadence.state in ("active", "paused"):
        batch.record(cadence_id, "stop", Evaluation("stopped", "stopped by a user", "stopped"))
        storage.write(conn, batch.writes)
    return batch.cadences[cadence_id]


def resume_cadence(
    conn: psycopg.Connection, config: CadenceConfig, cadence_id: int, now: datetime
) -> CadenceRow:
    """Make a cadence active again and decide at once (its latest observation may be terminal
    and waiting for a follow-up); the stop conditions still apply."""
    batch = _open_batch(conn, config, [cadence_id], now)
    cadence = batch.cadences.get(cadence_id)
    if cadence is None:
        raise CadenceNotFound(f"no cadence {cadence_id}")
    if cadence.state != "active":
        batch.cadences[cadence_id] = replace(cadence, state="active", state_reason=None)
        batch.writes.cadences[cadence_id] = batch.cadences[cadence_id]
        batch.decide(cadence_id, "resume")
        storage.write(conn, batch.writes)
    return batch.cadences[cadence_id]

"""Cadence strategies and decisions as pure functions, with a fixed clock (no Kafka, no DB).

The first cases mirror the TOM Toolkit's own cadence tests (frequency 72 h): retry of a failed
observation, resume after a failure, resume after a success; then what the toolkit got wrong.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tomstream.services.cadence.config import ConfigError, load_config
from tomstream.services.cadence.facilities import (
    FAKE,
    LCO_STATUSES,
    Facility,
    FakeParameters,
    InvalidParameters,
    Outcome,
    StatusMap,
    Window,
    default_facilities,
)
from tomstream.services.cadence.service import (
    EventEffect,
    StatusEvent,
    Target,
    Trigger,
    apply_event,
    evaluate,
    strategy_view,
)
from tomstream.services.cadence.storage import CadenceRow, ObservationRow
from tomstream.services.cadence.strategies import (
    ResumeCadenceAfterFailure,
    RetryFailedObservations,
    StrategyError,
    StrategyRegistry,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HOURS_72 = timedelta(hours=72)
FAKE_FACILITY = default_facilities()[FAKE]
RESUME = "tomstream.services.cadence.strategies.resume.ResumeCadenceAfterFailure"
RETRY = "tomstream.services.cadence.strategies.retry.RetryFailedObservations"


def cadence(strategy: str = RESUME, **changes: object) -> CadenceRow:
    row = CadenceRow(
        cadence_id=7,
        group_id=70,
        template_id=None,
        strategy=strategy,
        facility=FAKE,
        observation_type="IMAGING",
        target={"objectid": 1234, "name": None, "ra": 10.0, "dec": -5.0},
        parameters={},
        frequency_hours=72.0,
        anchor="requested",
        options={},
        stop_conditions={},
        state="active",
        state_reason=None,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def observation(
    step: int,
    status: str | None,
    start: datetime,
    length: timedelta = timedelta(hours=8),
    **changes: object,
) -> ObservationRow:
    row = ObservationRow(
        request_id=f"cad7-{step}",
        group_id=70,
        cadence_id=7,
        step=step,
        follows=f"cad7-{step - 1}" if step > 1 else None,
        reason="first" if step == 1 else "advance",
        facility=FAKE,
        observation_type="IMAGING",
        parameters={
            "window": {"start": start.isoformat(), "end": (start + length).isoformat()},
            "exposure_s": 300,
        },
        requested_start=start,
        requested_end=start + length,
        status=status,
        reported_status=status,
        status_time=NOW - timedelta(minutes=5) if status else None,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def decide(strategy, rows, row: CadenceRow | None = None, now: datetime = NOW):
    view = strategy_view(row or cadence(), rows, FAKE_FACILITY, now)
    return strategy.decide(view)


# ------------------------------------------------------------ the TOM Toolkit's cases, 72 h


def test_retry_of_a_failed_observation_is_one_request_72_hours_later() -> None:
    # As the toolkit's test: a group of five, the first canceled, the others pending.
    start = NOW + timedelta(days=1)
    rows = [observation(1, "CANCELED", start)] + [
        observation(step, "PENDING", start + timedelta(days=step), follows=None)
        for step in range(2, 6)
    ]
    result = decide(RetryFailedObservations(), rows, cadence(RETRY))
    assert len(result.proposals) == 1
    proposal = result.proposals[0]
    assert proposal.follows == "cad7-1"
    assert proposal.reason == "retry-shifted"
    assert proposal.window.start == start + HOURS_72
    assert proposal.window.length == timedelta(hours=8)


def test_resume_after_a_failure_starts_now_with_the_same_window_length() -> None:
    rows = [observation(1, "COMPLETED", NOW - timedelta(days=4), timedelta(hours=5))]
    rows.append(observation(2, "CANCELED", NOW - timedelta(days=1), timedelta(hours=5)))
    result = decide(ResumeCadenceAfterFailure(), rows)
    (proposal,) = result.proposals
    assert proposal.reason == "retry-now"
    assert abs(proposal.window.start - NOW) < timedelta(seconds=1)
    assert proposal.window.length == timedelta(hours=5)
    assert proposal.follows == "cad7-2"


def test_resume_after_a_success_advances_72_hours_from_the_requested_start() -> None:
    start = NOW - timedelta(hours=1)
    result = decide(ResumeCadenceAfterFailure(), [observation(1, "COMPLETED", start)])
    (proposal,) = result.proposals
    assert proposal.reason == "advance"
    assert proposal.window.start == start + HOURS_72
    assert proposal.window.end == start + HOURS_72 + timedelta(hours=8)


def test_success_after_a_missed_window_starts_now() -> None:
    # The last window ran from 7 to 6 days ago: + 72 h is still in the past.
    start = NOW - timedelta(days=7)
    rows = [observation(1, "COMPLETED", start, timedelta(days=1))]
    (proposal,) = decide(ResumeCadenceAfterFailure(), rows).proposals
    assert proposal.window.start == NOW
    assert proposal.window.length == timedelta(days=1)


def test_anchor_actual_advances_from_when_it_was_observed() -> None:
    start = NOW - timedelta(hours=10)
    observed = NOW - timedelta(hours=2)
    rows = [observation(1, "COMPLETED", start, scheduled_start=observed)]
    (proposal,) = decide(ResumeCadenceAfterFailure(), rows, cadence(anchor="actual")).proposals
    assert proposal.window.start == observed + HOURS_72


def test_retry_shifted_into_the_past_starts_now() -> None:
    rows = [observation(1, "WINDOW_EXPIRED", NOW - timedelta(days=10))]
    (proposal,) = decide(RetryFailedObservations(), rows, cadence(RETRY)).proposals
    assert proposal.window.start == NOW


@pytest.mark.parametrize("status", [None, "PENDING"])
def test_nothing_while_the_latest_observation_is_not_terminal(status: str | None) -> None:
    rows = [observation(1, "COMPLETED", NOW - timedelta(days=3)), observation(2, status, NOW)]
    result = decide(ResumeCadenceAfterFailure(), rows)
    assert result.proposals == ()
    assert not result.finished


def test_retry_strategy_retries_each_failure_once_and_then_finishes() -> None:
    first = observation(1, "FAILURE_LIMIT_REACHED", NOW + timedelta(days=1))
    retried = observation(2, "COMPLETED", NOW + timedelta(days=4), follows="cad7-1")
    # The failure is followed up: it is not retried again (the toolkit retried on every run).
    result = decide(RetryFailedObservations(), [first, retried], cadence(RETRY))
    assert result.proposals == ()
    assert result.finished


def test_retry_strategy_waits_for_pending_observations() -> None:
    rows = [observation(1, "COMPLETED", NOW), observation(2, "PENDING", NOW)]
    result = decide(RetryFailedObservations(), rows, cadence(RETRY))
    assert (result.proposals, result.finished) == ((), False)


# ------------------------------------------------------------------- decisions (service)


def test_invalid_parameters_emit_nothing_and_pause_the_cadence_with_the_reason() -> None:
    # 400 days ahead is beyond what the fake facility accepts (365 days).
    rows = [observation(1, "COMPLETED", NOW + timedelta(days=1))]
    row = cadence(frequency_hours=400 * 24.0)
    decision = evaluate(row, rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert decision.requests == ()
    assert decision.state == "paused"
    assert decision.outcome == "paused"
    assert "more than 365 days ahead" in decision.detail


def test_a_second_run_of_the_same_decision_emits_nothing_new() -> None:
    rows = [observation(1, "COMPLETED", NOW - timedelta(hours=1))]
    first = evaluate(cadence(), rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    (request,) = first.requests
    assert request.request_id == "cad7-2"
    assert request.follows == "cad7-1"
    assert request.parameters["exposure_s"] == 300  # the free fields carry over
    assert request.parameters["window"]["start"] == (
        (NOW - timedelta(hours=1) + HOURS_72).isoformat().replace("+00:00", "Z")
    )
    again = evaluate(cadence(), [*rows, request], ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert again.requests == ()
    assert again.outcome == "waiting"


def test_request_ids_are_deterministic() -> None:
    rows = [observation(1, "CANCELED", NOW)]
    decisions = [
        evaluate(cadence(), rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW + timedelta(s))
        for s in (0, 30)
    ]
    assert [d.requests[0].request_id for d in decisions] == ["cad7-2", "cad7-2"]


def test_max_observations_counts_successes_then_finishes() -> None:
    rows = [
        observation(1, "COMPLETED", NOW - timedelta(days=9)),
        observation(2, "CANCELED", NOW - timedelta(days=6)),
        observation(3, "COMPLETED", NOW - timedelta(days=5)),
    ]
    stop = {"max_observations": 2}
    decision = evaluate(
        cadence(stop_conditions=stop), rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW
    )
    assert (decision.state, decision.requests) == ("finished", ())
    not_yet = evaluate(
        cadence(stop_conditions={"max_observations": 3}),
        rows,
        ResumeCadenceAfterFailure(),
        FAKE_FACILITY,
        NOW,
    )
    assert not_yet.outcome == "emitted"


def test_max_consecutive_failures_stops_the_cadence() -> None:
    rows = [
        observation(1, "CANCELED", NOW - timedelta(days=3)),
        observation(2, "COMPLETED", NOW - timedelta(days=2)),
        observation(3, "WINDOW_EXPIRED", NOW - timedelta(days=1)),
        observation(4, "NOT_ATTEMPTED", NOW - timedelta(hours=1)),
    ]
    row = cadence(stop_conditions={"max_consecutive_failures": 2})
    decision = evaluate(row, rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert (decision.state, decision.requests) == ("stopped", ())
    assert "2 consecutive failures" in decision.detail
    # One failure after a success is not two in a row.
    decision = evaluate(row, rows[:3], ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert decision.outcome == "emitted"


def test_end_time_drops_windows_that_start_after_it() -> None:
    rows = [observation(1, "COMPLETED", NOW - timedelta(hours=1))]
    row = cadence(stop_conditions={"end_time": (NOW + timedelta(days=1)).isoformat()})
    decision = evaluate(row, rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert (decision.state, decision.requests) == ("finished", ())
    passed = evaluate(
        row, rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW + timedelta(days=2)
    )
    assert passed.state == "finished"
    assert "passed" in passed.detail


def test_a_user_cancel_stops_instead_of_retrying() -> None:
    rows = [observation(1, "CANCELED", NOW - timedelta(hours=1), user_cancel=True)]
    decision = evaluate(cadence(), rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert (decision.state, decision.requests) == ("stopped", ())
    assert "canceled by a user" in decision.detail


@pytest.mark.parametrize("state", ["stopped", "finished", "paused"])
def test_an_inactive_cadence_emits_nothing(state: str) -> None:
    rows = [observation(1, "COMPLETED", NOW)]
    decision = evaluate(cadence(state=state), rows, ResumeCadenceAfterFailure(), FAKE_FACILITY, NOW)
    assert (decision.outcome, decision.requests) == ("inactive", ())


def test_a_failing_plugin_is_recorded_not_fatal() -> None:
    class Broken(ResumeCadenceAfterFailure):
        def decide(self, view):
            raise RuntimeError("bug in a plugin")

    decision = evaluate(cadence(), [observation(1, "COMPLETED", NOW)], Broken(), FAKE_FACILITY, NOW)
    assert decision.outcome == "error"
    assert decision.state is None  # still active: the sweep tries again
    assert "bug in a plugin" in decision.detail


# ------------------------------------------------------------------------- status events


def event(status: str, minutes: float = 0, **fields: object) -> StatusEvent:
    return StatusEvent(
        request_id="cad7-1",
        facility=FAKE,
        observation_id="FAKE-1",
        status=status,
        event_time=NOW + timedelta(minutes=minutes),
        **fields,
    )


def test_the_same_status_twice_is_a_duplicate() -> None:
    row = observation(1, None, NOW, status_time=None)
    effect, applied = apply_event(row, event("PENDING"), FAKE_FACILITY)
    assert effect is EventEffect.APPLIED
    assert (applied.status, applied.observation_id) == ("PENDING", "FAKE-1")
    assert apply_event(applied, event("PENDING", 1), FAKE_FACILITY)[0] is EventEffect.DUPLICATE


def test_late_and_post_terminal_events_are_stale() -> None:
    row = observation(1, None, NOW, status_time=None)
    _, completed = apply_event(row, event("COMPLETED", 5), FAKE_FACILITY)
    assert apply_event(completed, event("PENDING", 1), FAKE_FACILITY)[0] is EventEffect.STALE
    # A terminal status is final, even with a later event time.
    later = apply_event(completed, event("CANCELED", 10), FAKE_FACILITY)
    assert later == (EventEffect.STALE, completed)


def test_an_unknown_status_is_recorded_but_changes_nothing_else() -> None:
    row = observation(1, "PENDING", NOW)
    effect, applied = apply_event(row, event("ON_HOLD", 1), FAKE_FACILITY)
    assert effect is EventEffect.UNKNOWN_STATUS
    assert (applied.status, applied.reported_status) == ("PENDING", "ON_HOLD")
    assert applied.status_time == row.status_time  # a known status after it still applies
    assert apply_event(applied, event("COMPLETED", 2), FAKE_FACILITY)[0] is EventEffect.APPLIED


def test_user_cancel_is_carried_onto_the_record() -> None:
    row = observation(1, "PENDING", NOW)
    _, applied = apply_event(row, event("CANCELED", 1, user_cancel=True), FAKE_FACILITY)
    assert applied.user_cancel


def test_messages_round_trip_through_avro() -> None:
    status = event("COMPLETED", scheduled_start=NOW, scheduled_end=NOW + timedelta(hours=1))
    assert StatusEvent.from_avro(status.to_avro()) == status
    trigger = Trigger(
        request_id="cad7-2",
        cadence_id=7,
        facility=FAKE,
        target=Target(objectid=1234, ra=10.0, dec=-5.0),
        observation_type="IMAGING",
        parameters={"window": {"start": "2026-03-13T12:00:00Z", "end": "2026-03-13T20:00:00Z"}},
        window=Window(start=NOW, end=NOW + timedelta(hours=8)),
        reason="advance",
        created_at=NOW,
    )
    assert Trigger.from_avro(trigger.to_avro()) == trigger


def test_a_status_event_needs_a_request_id() -> None:
    with pytest.raises(ValueError, match="request"):
        StatusEvent.model_validate(
            {"requestId": "", "facility": FAKE, "status": "PENDING", "eventTime": NOW}
        )


# --------------------------------------------------------------- facilities, registry, config


def test_lco_status_map_is_the_default() -> None:
    assert FAKE_FACILITY.statuses == LCO_STATUSES
    assert LCO_STATUSES.classify("COMPLETED") is Outcome.SUCCEEDED
    assert LCO_STATUSES.classify("NOT_ATTEMPTED") is Outcome.FAILED
    assert LCO_STATUSES.classify("PENDING") is Outcome.PENDING
    assert LCO_STATUSES.classify("SOMETHING_NEW") is Outcome.UNKNOWN


def test_a_status_cannot_mean_two_things() -> None:
    with pytest.raises(ValueError, match="two things"):
        StatusMap(pending={"A"}, success={"A"}, failed={"B"})


def test_fake_parameters_need_an_ordered_window() -> None:
    facility = Facility(FAKE, LCO_STATUSES, FakeParameters)
    with pytest.raises(InvalidParameters, match="window"):
        facility.validate({"window": {"start": NOW.isoformat(), "end": NOW.isoformat()}}, NOW)
    with pytest.raises(InvalidParameters, match="window"):
        facility.validate({"exposure_s": 30}, NOW)
    ok = facility.validate(
        {"window": {"start": NOW.isoformat(), "end": (NOW + HOURS_72).isoformat()}, "x": 1}, NOW
    )
    assert ok["x"] == 1


def test_built_ins_answer_to_short_names_and_store_dotted_paths() -> None:
    registry = StrategyRegistry()
    assert registry.resolve("ResumeCadenceAfterFailure") == RESUME
    assert registry.resolve(RETRY) == RETRY
    with pytest.raises(StrategyError, match="unknown strategy"):
        registry.resolve("NoSuchStrategy")


def _plugin(root: Path, package: str) -> str:
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "cadences.py").write_text(
        textwrap.dedent(
            f"""
            from tomstream.services.cadence.strategies import CadenceStrategy, StrategyResult

            class Nightly(CadenceStrategy):
                def decide(self, view):
                    return StrategyResult("{package}")
            """
        )
    )
    return f"{package}.cadences.Nightly"


def test_two_plugins_with_the_same_class_name_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    first, second = _plugin(tmp_path, "plug_a"), _plugin(tmp_path, "plug_b")
    registry = StrategyRegistry([first, second])
    rows = [observation(1, "COMPLETED", NOW)]
    notes = [decide(registry.get(path), rows).note for path in (first, second)]
    assert notes == ["plug_a", "plug_b"]
    with pytest.raises(StrategyError, match="unknown strategy"):
        StrategyRegistry().resolve(first)  # a plugin must be configured to be used


def test_configuration_file_adds_plugins_and_facilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = _plugin(tmp_path, "plug_c")
    path = tmp_path / "cadence.yaml"
    path.write_text(
        f"strategies: [{plugin}]\n"
        "facilities:\n"
        "  SLOW:\n"
        "    statuses: {pending: [QUEUED], success: [DONE], failed: [LOST]}\n"
    )
    config = load_config(path)
    assert plugin in config.strategies.names()
    assert config.facility("SLOW").statuses.classify("DONE") is Outcome.SUCCEEDED
    assert config.facility(FAKE).statuses == LCO_STATUSES
    path.write_text("strategies: [no.such.Strategy]\n")
    with pytest.raises(ConfigError, match=r"no\.such\.Strategy"):
        load_config(path)

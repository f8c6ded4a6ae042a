"""``RetryFailedObservations``: each failed observation retried once, a frequency later."""

from __future__ import annotations

from tomstream.services.cadence.facilities import Outcome
from tomstream.services.cadence.strategies.base import (
    CadenceStrategy,
    CadenceView,
    Proposal,
    StrategyResult,
    not_before,
)


class RetryFailedObservations(CadenceStrategy):
    """Retries every failed observation of the group exactly once (not on every run, as the TOM
    Toolkit's cron job did), its window shifted by the frequency (moved to now, with the same
    length, if the shifted start is already past).

    The cadence is finished when every observation has succeeded or been followed by a retry,
    and none is pending: i.e. every chain of retries ended in a success.
    """

    def decide(self, view: CadenceView) -> StrategyResult:
        open_failures = [
            obs
            for obs in view.observations
            if obs.outcome is Outcome.FAILED and not obs.followed_up
        ]
        proposals = tuple(
            Proposal(
                obs.request_id,
                "retry-shifted",
                obs.requested.starting_at(
                    not_before(obs.requested.start + view.frequency, view.now)
                ),
            )
            for obs in open_failures
        )
        if proposals:
            ids = ", ".join(obs.request_id for obs in open_failures)
            return StrategyResult(f"retry {ids} shifted by the frequency", proposals)
        waiting = [obs.request_id for obs in view.observations if not obs.outcome.terminal]
        if waiting:
            return StrategyResult(f"waiting for {', '.join(waiting)}")
        return StrategyResult("every observation succeeded", finished=True)

"""``ResumeCadenceAfterFailure``: one observation at a time, the cadence resumed after a failure."""

from __future__ import annotations

from tomstream.services.cadence.facilities import Outcome
from tomstream.services.cadence.strategies.base import (
    CadenceStrategy,
    CadenceView,
    Proposal,
    StrategyResult,
    not_before,
)


class ResumeCadenceAfterFailure(CadenceStrategy):
    """Looks at the group's latest observation only.

    * not terminal: nothing;
    * failed: a new request whose window starts now, with the previous window's length;
    * succeeded: the next window starts at the previous requested start + frequency (or, with
      ``anchor: actual``, at the time it was actually observed + frequency), moved to now if
      that is already past, and keeps the previous length.
    """

    def decide(self, view: CadenceView) -> StrategyResult:
        latest = view.latest
        if not latest.outcome.terminal:
            return StrategyResult(f"{latest.request_id} is {latest.outcome}: waiting")
        if latest.followed_up:
            return StrategyResult(f"{latest.request_id} is already followed up")
        if latest.outcome is Outcome.FAILED:
            window = latest.requested.starting_at(view.now)
            return StrategyResult(
                f"{latest.request_id} failed ({latest.status}): retry now",
                (Proposal(latest.request_id, "retry-now", window),),
            )
        anchor = latest.requested.start
        if view.anchor == "actual" and latest.observed_at is not None:
            anchor = latest.observed_at
        start = not_before(anchor + view.frequency, view.now)
        return StrategyResult(
            f"{latest.request_id} succeeded: advance",
            (Proposal(latest.request_id, "advance", latest.requested.starting_at(start)),),
        )

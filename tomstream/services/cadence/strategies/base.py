"""The strategy plugin interface: plain Python, no Kafka, no database, no clock of its own.

A strategy looks at a cadence's observations (oldest first) and says which new requests to
make, or that the cadence is finished. Everything it needs is in :class:`CadenceView`, ``now``
included, so a test runs it with any clock. The service around it applies the stop conditions,
validates the parameters and emits the triggers; a strategy never does I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tomstream.services.cadence.facilities import Outcome, Window

Reason = Literal["first", "advance", "retry-now", "retry-shifted"]
Anchor = Literal["requested", "actual"]


@dataclass(frozen=True)
class Observation:
    """One observation of the cadence's group, as a strategy sees it."""

    request_id: str
    step: int
    outcome: Outcome
    requested: Window
    #: When it was actually observed: the facility's scheduled start if reported, else the
    #: time of its terminal status; None while it is not terminal.
    observed_at: datetime | None = None
    followed_up: bool = False  # a later request already follows this one
    status: str | None = None  # the facility's own word


@dataclass(frozen=True)
class CadenceView:
    """What a strategy decides from."""

    cadence_id: int
    frequency: timedelta
    anchor: Anchor
    observations: tuple[Observation, ...]  # oldest first; never empty
    now: datetime
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> Observation:
        return self.observations[-1]


@dataclass(frozen=True)
class Proposal:
    """A new request: which observation it follows, why, and its window."""

    follows: str
    reason: Reason
    window: Window


@dataclass(frozen=True)
class StrategyResult:
    """A strategy's answer: requests to make, or finished, and a sentence saying why."""

    note: str
    proposals: tuple[Proposal, ...] = ()
    finished: bool = False


class CadenceStrategy(ABC):
    """Base class of cadence strategies. Subclass it, implement :meth:`decide`, and list the
    class's dotted path under ``strategies`` in the cadence configuration."""

    @abstractmethod
    def decide(self, view: CadenceView) -> StrategyResult:
        """What to request next, given the cadence's observations and the time ``view.now``."""


def not_before(start: datetime, now: datetime) -> datetime:
    """A window start already in the past is moved to now."""
    return max(start, now)

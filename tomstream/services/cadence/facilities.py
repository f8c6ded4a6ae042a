"""Facilities a cadence can observe with: their status words and their parameter models.

A facility reports an observation's state in its own words; its :class:`StatusMap` sorts those
words into pending, succeeded and failed (anything else is *unknown*: recorded, counted and not
acted on). Its parameter model (pydantic) checks a request before it is emitted, and its window
keys say where the observing window sits in the parameters.

Built in is ``FAKE`` (the fake facility, ``tomstream fake-facility``): a window
``{"start", "end"}`` (ISO 8601 UTC) plus free fields, and the LCO observation-portal words.
More facilities come from the cadence configuration (see :mod:`tomstream.services.cadence.config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tomstream.services.cadence.plugins import import_object

FAKE = "FAKE"


class Outcome(StrEnum):
    """What a status word means for a cadence."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.FAILED)


class StatusMap(BaseModel):
    """A facility's status words, sorted by what they mean; the sets must not overlap."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pending: frozenset[str]
    success: frozenset[str]
    failed: frozenset[str]

    @model_validator(mode="after")
    def _disjoint(self) -> StatusMap:
        overlap = (
            (self.pending & self.success)
            | (self.pending & self.failed)
            | (self.success & self.failed)
        )
        if overlap:
            raise ValueError(f"a status cannot mean two things: {sorted(overlap)}")
        return self

    def classify(self, status: str | None) -> Outcome:
        if status is None or status in self.pending:
            return Outcome.PENDING
        if status in self.success:
            return Outcome.SUCCEEDED
        if status in self.failed:
            return Outcome.FAILED
        return Outcome.UNKNOWN


# The LCO observation portal's request states, as the TOM Toolkit's OCS facility sorts them.
LCO_STATUSES = StatusMap(
    pending=frozenset({"PENDING"}),
    success=frozenset({"COMPLETED"}),
    failed=frozenset({"WINDOW_EXPIRED", "CANCELED", "FAILURE_LIMIT_REACHED", "NOT_ATTEMPTED"}),
)

#: How far ahead the fake facility accepts a window, like a real one bounded by its semester.
FAKE_MAX_AHEAD = timedelta(days=365)


class Window(BaseModel):
    """An observing window: both ends timezone-aware, the end after the start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def starting_at(self, start: datetime) -> Window:
        """The same length, moved to ``start`` (ValueError past the calendar's end)."""
        try:
            return Window(start=start, end=start + self.length)
        except OverflowError:
            raise ValueError("the window would end after the year 9999") from None


class FakeParameters(BaseModel):
    """The fake facility's request: a window plus any free fields.

    Validated with context ``{"now": datetime}``, the window must end within
    :data:`FAKE_MAX_AHEAD` of now, as a real facility refuses requests past its semester
    (a template, validated without a time, is not held to it).
    """

    model_config = ConfigDict(extra="allow")

    window: Window

    @field_validator("window")
    @classmethod
    def _not_too_far(cls, window: Window, info: ValidationInfo) -> Window:
        now = (info.context or {}).get("now")
        if now is not None and window.end - now > FAKE_MAX_AHEAD:
            raise ValueError(
                f"window ends {window.end.isoformat()}, more than "
                f"{FAKE_MAX_AHEAD.days} days ahead: the facility does not accept it"
            )
        return window


class InvalidParameters(ValueError):
    """A request's parameters do not satisfy the facility's model."""


@dataclass(frozen=True)
class Facility:
    """One facility: its name, status words, parameter model and where the window sits."""

    name: str
    statuses: StatusMap
    parameters: type[BaseModel]
    window_start_key: str = "window.start"  # dotted path into the parameters
    window_end_key: str = "window.end"

    def validate(self, parameters: Mapping[str, Any], now: datetime | None) -> dict[str, Any]:
        """The parameters as the model accepts them (JSON-ready); InvalidParameters if not."""
        try:
            model = self.parameters.model_validate(dict(parameters), context={"now": now})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item['loc']) or 'parameters'}: "
                f"{str(item['msg']).removeprefix('Value error, ')}"
                for item in error.errors()
            )
            raise InvalidParameters(f"invalid parameters for {self.name}: {problems}") from None
        return model.model_dump(mode="json")

    def window(self, parameters: Mapping[str, Any]) -> Window:
        """The observing window inside ``parameters``; InvalidParameters if there is none."""
        try:
            return Window(
                start=_get(parameters, self.window_start_key),
                end=_get(parameters, self.window_end_key),
            )
        except (KeyError, TypeError, ValidationError) as error:
            raise InvalidParameters(
                f"parameters for {self.name} need a window at "
                f"{self.window_start_key} / {self.window_end_key}: {error}"
            ) from None

    def with_window(self, parameters: Mapping[str, Any], window: Window) -> dict[str, Any]:
        """A copy of ``parameters`` with the window replaced (ISO 8601 UTC strings)."""
        copy = _deep_copy(parameters)
        _set(copy, self.window_start_key, _iso(window.start))
        _set(copy, self.window_end_key, _iso(window.end))
        return copy


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _get(parameters: Mapping[str, Any], dotted: str) -> Any:
    value: Any = parameters
    for part in dotted.split("."):
        value = value[part]
    return value


def _set(parameters: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = parameters
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


class FacilityConfig(BaseModel):
    """A facility in the cadence configuration file."""

    model_config = ConfigDict(extra="forbid")

    parameters: str = Field(
        "tomstream.services.cadence.facilities.FakeParameters",
        description="dotted path of the pydantic model that checks a request's parameters",
    )
    statuses: StatusMap = LCO_STATUSES
    window_start_key: str = "window.start"
    window_end_key: str = "window.end"

    def build(self, name: str) -> Facility:
        return Facility(
            name=name,
            statuses=self.statuses,
            parameters=load_model(self.parameters),
            window_start_key=self.window_start_key,
            window_end_key=self.window_end_key,
        )


def load_model(dotted: str) -> type[BaseModel]:
    """Import a pydantic model by dotted path (``package.module.Class``)."""
    found = import_object(dotted)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ValueError(f"{dotted!r} is not a pydantic model")
    return found


def default_facilities() -> dict[str, Facility]:
    return {FAKE: Facility(FAKE, LCO_STATUSES, FakeParameters)}

"""Cadence strategies: plugins named by dotted path.

The stored key of a cadence's strategy is the class's dotted path (``package.module.Class``), so
two plugins that share a class name never collide. The built-ins also answer to their short
names. Other plugins are listed under ``strategies`` in the cadence configuration.
"""

from __future__ import annotations

from collections.abc import Iterable

from tomstream.services.cadence.plugins import import_object
from tomstream.services.cadence.strategies.base import (
    CadenceStrategy,
    CadenceView,
    Observation,
    Proposal,
    StrategyResult,
)
from tomstream.services.cadence.strategies.resume import ResumeCadenceAfterFailure
from tomstream.services.cadence.strategies.retry import RetryFailedObservations

__all__ = [
    "BUILT_IN",
    "CadenceStrategy",
    "CadenceView",
    "Observation",
    "Proposal",
    "ResumeCadenceAfterFailure",
    "RetryFailedObservations",
    "StrategyError",
    "StrategyRegistry",
    "StrategyResult",
    "dotted_path",
]

BUILT_IN: tuple[type[CadenceStrategy], ...] = (ResumeCadenceAfterFailure, RetryFailedObservations)


class StrategyError(ValueError):
    """A strategy name that is not configured, or a dotted path that is not a strategy."""


def dotted_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def load_strategy_class(path: str) -> type[CadenceStrategy]:
    """Import ``package.module.Class`` (``package.module:Class`` is accepted too)."""
    try:
        found = import_object(path)
    except ValueError as error:
        raise StrategyError(f"strategy: {error}") from None
    if not (isinstance(found, type) and issubclass(found, CadenceStrategy)):
        raise StrategyError(f"{path!r} is not a CadenceStrategy subclass")
    return found


class StrategyRegistry:
    """The configured strategies: the built-ins plus the plugins listed by dotted path."""

    def __init__(self, plugins: Iterable[str] = ()) -> None:
        classes = [*BUILT_IN, *(load_strategy_class(path) for path in plugins)]
        self._by_path = {dotted_path(cls): cls() for cls in classes}
        self._short = {cls.__name__: dotted_path(cls) for cls in BUILT_IN}

    def resolve(self, name: str) -> str:
        """The stored key (dotted path) for a built-in's short name or a configured path."""
        key = self._short.get(name, name.replace(":", "."))
        if key not in self._by_path:
            raise StrategyError(
                f"unknown strategy {name!r}: configured are {', '.join(self.names())}"
            )
        return key

    def get(self, key: str) -> CadenceStrategy:
        return self._by_path[self.resolve(key)]

    def names(self) -> list[str]:
        return sorted(self._by_path)

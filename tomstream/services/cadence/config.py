"""The cadence configuration: which strategy plugins and facilities exist.

Read from the YAML file named by ``--config`` or ``TOMSTREAM_CADENCE_CONFIG`` (the worker, the
sweep and the HTTP API must agree, so the variable is the usual way); without a file, the
built-in strategies and the ``FAKE`` facility::

    strategies:                      # plugins, by dotted path, besides the built-ins
      - mypackage.cadences.EveryNightUntilPeak
    facilities:
      LCO:
        parameters: mypackage.lco.LCOParameters    # pydantic model of a request
        window_start_key: start                    # where the window sits in the parameters
        window_end_key: end
        statuses:                                  # default: the LCO portal's words
          pending: [PENDING]
          success: [COMPLETED]
          failed: [WINDOW_EXPIRED, CANCELED, FAILURE_LIMIT_REACHED, NOT_ATTEMPTED]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tomstream.services.cadence.facilities import Facility, FacilityConfig, default_facilities
from tomstream.services.cadence.strategies import StrategyError, StrategyRegistry


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid (one line)."""


class CadenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOMSTREAM_CADENCE_", extra="ignore")

    config: Path | None = Field(None, description="the cadence configuration YAML file")


class CadenceConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategies: list[str] = []
    facilities: dict[str, FacilityConfig] = {}


@dataclass(frozen=True)
class CadenceConfig:
    """The strategies and facilities every cadence process uses."""

    strategies: StrategyRegistry
    facilities: dict[str, Facility]

    def facility(self, name: str) -> Facility:
        try:
            return self.facilities[name]
        except KeyError:
            raise ValueError(
                f"unknown facility {name!r}: configured are {', '.join(sorted(self.facilities))}"
            ) from None


def load_config(path: Path | None = None) -> CadenceConfig:
    """The configuration from ``path``, else from TOMSTREAM_CADENCE_CONFIG, else built in."""
    path = path or CadenceSettings().config
    parsed = CadenceConfigFile()
    if path is not None:
        try:
            parsed = CadenceConfigFile.model_validate(yaml.safe_load(path.read_text()) or {})
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read cadence configuration {path}: {error}") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    try:
        facilities = default_facilities()
        facilities.update({name: conf.build(name) for name, conf in parsed.facilities.items()})
        return CadenceConfig(StrategyRegistry(parsed.strategies), facilities)
    except (StrategyError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None

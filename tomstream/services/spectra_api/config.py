"""Settings of the HTTP API only (``TOMSTREAM_API_*``); connections come from the shared
:class:`tomstream.config.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOMSTREAM_API_", extra="ignore", frozen=True)

    pool_size: int = Field(
        8, ge=1, le=100, description="PostgreSQL connections the API keeps (one per busy request)"
    )
    session_days: float = Field(
        14, gt=0, le=365, description="how long a login session lasts (Django's default: 14 days)"
    )
    secure_cookies: bool = Field(
        False, description="mark session and CSRF cookies Secure (set it behind HTTPS)"
    )
    outbox_relay: bool = Field(
        True,
        description="publish spectrum events from this process; turn off when another process "
        "(e.g. the cadence worker, whose relay publishes the whole outbox) does it",
    )
    max_objects: int = Field(
        10_000, ge=1, description="most objects one ltcv request may name (bounds response size)"
    )

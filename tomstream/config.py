"""Settings for every tomstream process, read from ``TOMSTREAM_*`` environment variables.

The defaults point at the local stack (``tomstream stack up``), so a developer needs no
variables at all; a deployment sets them to its own servers.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TOMSTREAM_"

# Ports of the local stack: deliberately not the servers' defaults, so a developer's own
# Kafka / PostgreSQL / MongoDB on the usual ports never collides with it.
LOCAL_KAFKA_PORT = 19092
LOCAL_KAFKA_CONTROLLER_PORT = 19093
LOCAL_POSTGRES_PORT = 15432
LOCAL_MONGODB_PORT = 27027

LOCAL_KAFKA_BOOTSTRAP = f"127.0.0.1:{LOCAL_KAFKA_PORT}"
LOCAL_POSTGRES_DSN = f"postgresql://tomstream@127.0.0.1:{LOCAL_POSTGRES_PORT}/tomstream"
LOCAL_MONGODB_URI = f"mongodb://127.0.0.1:{LOCAL_MONGODB_PORT}/"

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._\-]*$")


class SettingsError(Exception):
    """A setting is invalid; the message names the environment variable."""


class Settings(BaseSettings):
    """Connection settings and shared options (environment variable = ``TOMSTREAM_`` + name)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        LOCAL_KAFKA_BOOTSTRAP, description="Kafka bootstrap servers, comma-separated host:port"
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: str | None = Field(None, description="CA file for SSL / SASL_SSL")
    kafka_session_timeout_ms: int = Field(
        10_000,
        ge=6_000,
        le=300_000,
        description="how soon a crashed consumer's partitions go to another member",
    )
    postgres_dsn: str = Field(LOCAL_POSTGRES_DSN, description="PostgreSQL connection URI")
    mongodb_uri: str = Field(LOCAL_MONGODB_URI, description="MongoDB connection URI")
    mongodb_database: str = Field("tomstream", description="MongoDB database name")
    topic_prefix: str = Field("", description="prepended to every Kafka topic name tomstream uses")
    stack_dir: Path = Field(
        Path(".stack"), description="where `tomstream stack` keeps data, logs and pid files"
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "tomstream",
        description="where `tomstream stack` keeps installed Kafka jars and the FerretDB binary",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="address of a service's /metrics (0.0.0.0 in containers)"
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="port of a service's /metrics (0: pick a free one)"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        bad = [s for s in servers if not _HOST_PORT.match(s)]
        if not servers or bad:
            raise ValueError(f"expected comma-separated host:port, got {value!r}")
        return ",".join(servers)

    @field_validator("kafka_security_protocol")
    @classmethod
    def _check_protocol(cls, value: str) -> str:
        allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if value.upper() not in allowed:
            raise ValueError(f"expected one of {sorted(allowed)}, got {value!r}")
        return value.upper()

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _check_mechanism(cls, value: str | None) -> str | None:
        allowed = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        if value is not None and value.upper() not in allowed:
            raise ValueError(f"expected one of {sorted(allowed)}, got {value!r}")
        return value.upper() if value else None

    @field_validator("postgres_dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"expected a postgresql:// URI, got {value!r}")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _check_mongo(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"expected a mongodb:// URI, got {value!r}")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(f"only letters, digits, '.', '_' and '-' are allowed, got {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return value.upper()

    def topic(self, name: str) -> str:
        """The full name of one of the product's topics, with the deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings shared by every producer, consumer and admin client."""
        return kafka_cluster_config(
            self.kafka_bootstrap_servers,
            self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_ca_location=self.kafka_ssl_ca_location,
        )


def kafka_cluster_config(
    bootstrap_servers: str,
    security_protocol: str,
    *,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_ca_location: str | None = None,
) -> dict[str, str]:
    """librdkafka settings of one cluster: where it is and how to log in, unset ones left out."""
    optional = {
        "sasl.mechanism": sasl_mechanism or None,
        "sasl.username": sasl_username,
        "sasl.password": sasl_password,
        "ssl.ca.location": ssl_ca_location or None,
    }
    return {
        "bootstrap.servers": bootstrap_servers,
        "security.protocol": security_protocol,
        **{key: value for key, value in optional.items() if value is not None},
    }


def load_settings() -> Settings:
    """Read the settings, turning a validation error into one line that names the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {ENV_PREFIX}{field.upper()}: {message}") from None


@cache
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()

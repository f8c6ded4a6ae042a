"""Which brokers broker_poll reads, from a YAML file (``tomstream broker-poll --config``).

```yaml
brokers:
  - name: alerce
    bootstrap_servers: kafka.alerce.online:9093     # omit: tomstream's own Kafka
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    username: desc
    password_env: ALERCE_KAFKA_PASSWORD            # the secret stays in the environment
    ssl_ca_location: /etc/ssl/certs/ca-certificates.crt
    topic_patterns: ['^lc_classifier_.*_[0-9]{8}$']  # ALeRCE: one topic per classifier per day
  - name: fakebroker
    topics: [classifications]                        # our own Kafka: the topic prefix applies
```

Messages may be schemaless or Confluent-framed Avro (told apart per message).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tomstream.config import Settings, kafka_cluster_config


class BrokerConfigError(Exception):
    """The broker configuration file is missing or invalid; the message says where."""


class BrokerSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password_env: str | None = None
    ssl_ca_location: str | None = None
    topics: list[str] = Field(default_factory=list)
    topic_patterns: list[str] = Field(default_factory=list)
    group_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> BrokerSource:
        if not self.topics and not self.topic_patterns:
            raise ValueError("give at least one of topics or topic_patterns")
        bad = [p for p in self.topic_patterns if not p.startswith("^")]
        if bad:
            raise ValueError(f"topic patterns must start with ^: {bad}")
        if self.sasl_mechanism and not (self.username and self.password_env):
            raise ValueError("sasl_mechanism needs username and password_env")
        return self

    @property
    def own_cluster(self) -> bool:
        return self.bootstrap_servers is None

    def topic_names(self, settings: Settings) -> list[str]:
        named = [settings.topic(t) if self.own_cluster else t for t in self.topics]
        return [*named, *self.topic_patterns]

    def kafka_config(self) -> dict[str, str] | None:
        """librdkafka settings of this broker's cluster (None: tomstream's own Kafka)."""
        if self.bootstrap_servers is None:
            return None
        password = None
        if self.sasl_mechanism:
            password = os.environ.get(self.password_env or "")
            if password is None:
                raise BrokerConfigError(
                    f"broker {self.name}: environment variable {self.password_env} is not set"
                )
        return kafka_cluster_config(
            self.bootstrap_servers,
            self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.username if self.sasl_mechanism else None,
            sasl_password=password,
            ssl_ca_location=self.ssl_ca_location,
        )


class BrokerPollConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    brokers: list[BrokerSource] = Field(min_length=1)


DEFAULT = BrokerPollConfig(brokers=[BrokerSource(name="fakebroker", topics=["classifications"])])


def load_config(path: Path | None) -> BrokerPollConfig:
    if path is None:
        return DEFAULT
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise BrokerConfigError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise BrokerConfigError(f"{path} is not valid YAML: {error}") from None
    try:
        return BrokerPollConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BrokerConfigError(f"{path}: {where}: {message}") from None

"""Settings: defaults, validation, and the one-line error that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tomstream.config import LOCAL_KAFKA_BOOTSTRAP, Settings, SettingsError, load_settings


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOMSTREAM_"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == LOCAL_KAFKA_BOOTSTRAP
    assert settings.topic("alerts-wfd") == "alerts-wfd"


def test_topic_prefix_is_prepended(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("TOMSTREAM_TOPIC_PREFIX", "test-1-")
    assert load_settings().topic("classifications") == "test-1-classifications"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("TOMSTREAM_POSTGRES_DSN", "mysql://x"),
        ("TOMSTREAM_MONGODB_URI", "http://x"),
        ("TOMSTREAM_TOPIC_PREFIX", "bad prefix!"),
        ("TOMSTREAM_METRICS_PORT", "99999"),
        ("TOMSTREAM_METRICS_PORT", "eighty"),
        ("TOMSTREAM_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("TOMSTREAM_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^invalid setting {variable}: "):
        load_settings()


def test_the_command_fails_with_one_clear_line() -> None:
    env = {**os.environ, "TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS": "localhost"}
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", "stack", "env"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tomstream: invalid setting TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS:")
    assert "host:port" in lines[0]


def test_kafka_client_config_carries_sasl_and_ssl() -> None:
    settings = Settings(
        kafka_bootstrap_servers="broker.example:9094",
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="scram-sha-512",
        kafka_sasl_username="desc",
        kafka_sasl_password="secret",
        kafka_ssl_ca_location="/etc/ca.pem",
    )
    assert settings.kafka_client_config() == {
        "bootstrap.servers": "broker.example:9094",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "desc",
        "sasl.password": "secret",
        "ssl.ca.location": "/etc/ca.pem",
    }

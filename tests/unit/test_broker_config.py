"""broker_poll's broker configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tomstream.config import Settings
from tomstream.services.broker_poll.config import DEFAULT, BrokerConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "brokers.yaml"
    path.write_text(text)
    return path


def test_default_reads_the_fake_broker_on_our_own_kafka() -> None:
    (broker,) = DEFAULT.brokers
    assert broker.own_cluster
    assert broker.topic_names(Settings(topic_prefix="p-")) == ["p-classifications"]


def test_an_external_sasl_broker_with_a_daily_topic_pattern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERCE_PASSWORD", "s3cret")
    config = load_config(
        write(
            tmp_path,
            """
brokers:
  - name: alerce
    bootstrap_servers: kafka.example.org:9093
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    username: desc
    password_env: ALERCE_PASSWORD
    topic_patterns: ['^lc_classifier_.*_[0-9]{8}$']
""",
        )
    )
    (broker,) = config.brokers
    assert broker.topic_names(Settings(topic_prefix="p-")) == ["^lc_classifier_.*_[0-9]{8}$"]
    assert broker.kafka_config() == {
        "bootstrap.servers": "kafka.example.org:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "desc",
        "sasl.password": "s3cret",
    }


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("brokers: []", "brokers"),
        ("brokers:\n  - name: x\n", "topics"),
        ("brokers:\n  - name: x\n    topics: [a]\n    colour: red\n", "colour"),
        ("brokers:\n  - name: x\n    topic_patterns: ['lc_.*']\n", "must start with \\^"),
        ("brokers:\n  - name: x\n    topics: [a]\n    sasl_mechanism: PLAIN\n", "password_env"),
        ("brokers: [", "not valid YAML"),
    ],
)
def test_a_bad_file_says_what_is_wrong(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(BrokerConfigError, match=complaint):
        load_config(write(tmp_path, text))


def test_a_missing_password_variable_is_named(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "brokers:\n  - name: b\n    bootstrap_servers: h:1\n    sasl_mechanism: PLAIN\n"
            "    username: u\n    password_env: NO_SUCH_VARIABLE_HERE\n    topics: [t]\n",
        )
    )
    with pytest.raises(BrokerConfigError, match="NO_SUCH_VARIABLE_HERE"):
        config.brokers[0].kafka_config()


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")

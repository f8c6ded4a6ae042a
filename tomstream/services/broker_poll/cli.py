"""``tomstream broker-poll``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tomstream.cli_options import BatchSize, CommandError, ExitOnIdle, GroupId
from tomstream.services.broker_poll import BATCH_SIZE


def broker_poll(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="YAML file listing the brokers to read (connection, SASL, topics or patterns). "
            "Default: the fake broker's `classifications` topic on tomstream's own Kafka.",
        ),
    ] = None,
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
    batch_size: BatchSize = BATCH_SIZE,
) -> None:
    """Consume brokers' classification topics into PostgreSQL and MongoDB.

    PostgreSQL gets classifiers and one row per message with class ids, probabilities and four
    timestamps; MongoDB the raw message.
    The same classification delivered twice (same classifier, alert and content) is stored
    once, so replaying topics adds nothing. Undecodable messages go to <topic>.dlq on
    tomstream's own Kafka.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.broker_poll.config import BrokerConfigError, load_config
    from tomstream.services.broker_poll.service import SERVICE, run

    try:
        brokers = load_config(config)
    except BrokerConfigError as error:
        raise CommandError(str(error)) from None
    configure_logging(settings().log_level, service=SERVICE)
    try:
        run(
            settings(),
            brokers,
            group_id=group_id,
            exit_on_idle_s=exit_on_idle,
            batch_size=batch_size,
        )
    except BrokerConfigError as error:
        raise CommandError(str(error)) from None

"""``tomstream ingest``."""

from __future__ import annotations

from typing import Annotated

import typer

from tomstream.cli_options import BatchSize, ExitOnIdle, GroupId
from tomstream.services.ingest import BATCH_SIZE


def ingest(
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            help="Another alert topic to read, e.g. a Rubin topic of Confluent-framed lsst "
            "v10/v11 alerts (repeatable; a name starting with ^ is a regular expression).",
        ),
    ] = None,
    batch_size: BatchSize = BATCH_SIZE,
) -> None:
    """Consume alert topics into MongoDB and PostgreSQL.

    Raw alerts go to MongoDB; objects, sources, forced photometry and receipts to PostgreSQL.
    Reads alerts-wfd, alerts-ddf-full and alerts-ddf-limited (with the topic prefix), plain
    schemaless ELAsTiCC2 or Confluent-framed Rubin alerts, told apart per message. Undecodable
    messages go to <topic>.dlq; offsets are committed only after both stores have the batch.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.ingest.service import SERVICE, run

    configure_logging(settings().log_level, service=SERVICE)
    run(
        settings(),
        extra_topics=topic or (),
        group_id=group_id,
        exit_on_idle_s=exit_on_idle,
        batch_size=batch_size,
    )

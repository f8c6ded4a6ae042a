"""What every ``tomstream`` subcommand shares: options, the console, the user-facing error."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console(highlight=False)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


ExitOnIdle = Annotated[
    float | None,
    typer.Option(
        "--exit-on-idle",
        metavar="SECONDS",
        min=0,
        help="Stop once no message arrived for this long (for tests and backfills).",
    ),
]
GroupId = Annotated[
    str | None,
    typer.Option(
        "--group-id",
        metavar="ID",
        help="Kafka consumer group (default: <topic prefix>tomstream-<service>). "
        "A new group starts from the earliest offset, so a replay is one new group id.",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        help="Most messages taken and stored per batch "
        "(offsets are committed at most once a second).",
    ),
]

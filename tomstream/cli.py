"""The ``tomstream`` command: every service and tool is a subcommand of it."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tomstream.config import SettingsError, settings

app = typer.Typer(
    name="tomstream",
    help="A streaming Target and Observation Manager for LSST DESC.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
stack_app = typer.Typer(
    help="The local infrastructure: real Kafka, PostgreSQL and FerretDB on 127.0.0.1.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="PostgreSQL schema.", no_args_is_help=True)
roundtrip_app = typer.Typer(
    help="Smoke test: Avro messages through Kafka into PostgreSQL and MongoDB, counted.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(roundtrip_app, name="roundtrip")

# Options every consuming service shares.
ExitOnIdle = Annotated[
    float | None,
    typer.Option(
        "--exit-on-idle",
        metavar="SECONDS",
        help="Stop once no message arrived for this long (for tests and backfills).",
    ),
]
GroupId = Annotated[
    str | None,
    typer.Option(
        "--group-id",
        metavar="ID",
        help="Kafka consumer group [default: <topic prefix>tomstream-<service>]. "
        "A new group starts from the earliest offset, so a replay is one new group id.",
    ),
]

console = Console(highlight=False)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------------------- stack


@stack_app.command("up")
def stack_up() -> None:
    """Install what is missing, start what is not running, and wait until all three answer.

    The first run installs Kafka's jars (Maven Central), PostgreSQL (Debian) and builds
    FerretDB (Go module proxy) into the cache directory; later runs only start the servers.
    A server whose connection variable is set (e.g. TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS) is
    used as it is and not started.
    """
    from tomstream.stack import Stack

    started = time.monotonic()
    states = Stack(settings()).up(say=console.print)
    _print_states(states)
    console.print(f"stack up in {time.monotonic() - started:.1f} s")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the stack's own server processes (never anything it did not start)."""
    from tomstream.stack import Stack

    Stack(settings()).down(say=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """Show each server's state; exit status 1 if any of them does not answer."""
    from tomstream.stack import Stack

    states = Stack(settings()).status()
    _print_states(states)
    if not all(state.healthy for state in states):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env() -> None:
    """Print the connection settings as shell ``export`` lines (eval "$(tomstream stack env)")."""
    from tomstream.stack import Stack

    for name, value in Stack(settings()).env().items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"export TOMSTREAM_MONGODB_DATABASE={shlex.quote(settings().mongodb_database)}")


def _print_states(states: list) -> None:
    table = Table("server", "state", "managed", "pid")
    table.add_column("listens on", overflow="fold")
    for state in states:
        health = "[green]healthy[/]" if state.healthy else f"[red]down[/]: {state.error}"
        table.add_row(state.name, health, state.managed, str(state.pid or "-"), state.address)
    console.print(table)


# ------------------------------------------------------------------------------------------- db


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the pending PostgreSQL migrations (running it twice changes nothing)."""
    from tomstream.storage.migrations import migrate

    applied = migrate(settings().postgres_dsn)
    if applied:
        for version, name in applied:
            console.print(f"applied {version:04d} {name}")
    else:
        console.print("database is up to date")


# ------------------------------------------------------------------------------------ roundtrip

Count = Annotated[int, typer.Option("--count", min=1, help="How many messages.")]
TopicOpt = Annotated[
    str | None,
    typer.Option("--topic", help="Topic name [default: <topic prefix>roundtrip]."),
]


@roundtrip_app.command("produce")
def roundtrip_produce(
    count: Count = 1000,
    first_id: Annotated[
        int | None, typer.Option("--first-id", help="First message id [default: from the clock].")
    ] = None,
    topic: TopicOpt = None,
) -> None:
    """Produce COUNT Avro ping messages with consecutive ids."""
    from tomstream import roundtrip

    first = roundtrip.new_first_id() if first_id is None else first_id
    roundtrip.produce(settings(), count, first, topic)
    console.print(f"produced {count} messages, ids {first}..{first + count - 1}")


@roundtrip_app.command("consume")
def roundtrip_consume(
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
    topic: TopicOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 200,
) -> None:
    """Consume pings into PostgreSQL and MongoDB with the shared consumer core."""
    from tomstream import roundtrip
    from tomstream.logs import configure_logging

    configure_logging(settings().log_level, service=roundtrip.SERVICE)
    roundtrip.consume(
        settings(),
        topic=topic,
        group_id=group_id,
        exit_on_idle_s=exit_on_idle,
        batch_size=batch_size,
    )


@roundtrip_app.command("run")
def roundtrip_run(count: Count = 1000) -> None:
    """Produce COUNT pings, consume them until idle, and show what landed in each store."""
    _roundtrip(count)


def _roundtrip(count: int) -> None:
    from tomstream import roundtrip
    from tomstream.logs import configure_logging

    configure_logging("WARNING", service=roundtrip.SERVICE)
    config = settings()
    first = roundtrip.new_first_id()
    started = time.monotonic()
    with console.status(f"producing {count} Avro messages to {config.topic(roundtrip.TOPIC)}"):
        roundtrip.produce(config, count, first)
    produced_s = time.monotonic() - started
    with console.status("consuming them into PostgreSQL and MongoDB (until idle for 3 s)"):
        stats = roundtrip.consume(config, exit_on_idle_s=3.0)
    landed = roundtrip.count_landed(config, first, count)
    table = Table("step", "messages", title="round trip through Kafka")
    table.add_row(f"produced to Kafka ({produced_s:.1f} s)", str(count))
    table.add_row("consumed by the core consumer", str(stats.consumed))
    table.add_row("rows in PostgreSQL (roundtrip_message)", str(landed.rows))
    table.add_row(f"documents in MongoDB ({roundtrip.COLLECTION})", str(landed.documents))
    console.print(table)
    if landed.rows != count or landed.documents != count:
        raise CommandError(
            f"round trip incomplete: {landed.rows} rows and {landed.documents} documents "
            f"for {count} messages"
        )
    console.print(f"[green]round trip complete[/] in {time.monotonic() - started:.1f} s")


# ----------------------------------------------------------------------------------------- demo


@app.command("demo")
def demo(count: Count = 1000) -> None:
    """The main job: bring the stack up, migrate, and run a visible round trip through Kafka."""
    from tomstream.storage.migrations import migrate

    console.rule("1. local stack")
    stack_up()
    console.rule("2. database migrations")
    applied = migrate(settings().postgres_dsn)
    console.print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
    console.rule("3. round trip")
    _roundtrip(count)
    console.print(
        "The stack keeps running: [bold]tomstream stack status[/], "
        "[bold]tomstream stack down[/] to stop it."
    )


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    """Entry point: one clear line instead of a traceback for a user's mistake."""
    from tomstream.stack import StackError

    try:
        app()
    except (SettingsError, StackError, CommandError) as exc:
        print(f"tomstream: {exc}", file=sys.stderr)
        sys.exit(1 if not isinstance(exc, SettingsError) else 2)

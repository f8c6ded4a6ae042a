"""The ``tomstream`` command: every service and tool is a subcommand of it."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tomstream.cli_options import BatchSize, CommandError, ExitOnIdle, GroupId, console
from tomstream.config import SettingsError, settings
from tomstream.services.broker_poll.cli import broker_poll
from tomstream.services.cadence.cli import cadence_app, fake_facility
from tomstream.services.fakebroker.cli import fakebroker
from tomstream.services.ingest.cli import ingest
from tomstream.services.sim.cli import sim_app
from tomstream.services.spectra_api.cli import api, users_app

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
report_app = typer.Typer(
    help="Plots and tables of a run, from what the services stored.", no_args_is_help=True
)
app.add_typer(roundtrip_app, name="roundtrip")
app.add_typer(report_app, name="report")
app.add_typer(sim_app, name="sim")
app.command("ingest")(ingest)
app.command("fakebroker")(fakebroker)
app.command("broker-poll")(broker_poll)
app.add_typer(cadence_app, name="cadence")
app.command("fake-facility")(fake_facility)
app.command("api")(api)
app.add_typer(users_app, name="users")


# ---------------------------------------------------------------------------------------- stack


@stack_app.command("up")
def stack_up() -> None:
    """Install what is missing, start what is not running, and wait until all three answer.

    The first run installs Kafka's jars (Maven Central), PostgreSQL (Debian) and builds
    FerretDB (Go module proxy) into the cache directory; later runs only start the servers.
    A server whose connection variable is set (e.g. TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS) is
    used as it is and not started.
    """
    from tomstream.shell.stack import Stack

    started = time.monotonic()
    states = Stack(settings()).up(say=console.print)
    _print_states(states)
    console.print(f"stack up in {time.monotonic() - started:.1f} s")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the stack's own server processes (never anything it did not start)."""
    from tomstream.shell.stack import Stack

    Stack(settings()).down(say=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """Show each server's state; exit status 1 if any of them does not answer."""
    from tomstream.shell.stack import Stack

    states = Stack(settings()).status()
    _print_states(states)
    if not all(state.healthy for state in states):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env() -> None:
    """Print the connection settings as shell ``export`` lines (eval "$(tomstream stack env)")."""
    from tomstream.shell.stack import Stack

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
    typer.Option("--topic", help="Topic name (default: <topic prefix>roundtrip)."),
]


@roundtrip_app.command("produce")
def roundtrip_produce(
    count: Count = 1000,
    first_id: Annotated[
        int | None, typer.Option("--first-id", help="First message id (default: from the clock).")
    ] = None,
    topic: TopicOpt = None,
) -> None:
    """Produce COUNT Avro ping messages with consecutive ids."""
    from tomstream.shell import roundtrip

    first = roundtrip.new_first_id() if first_id is None else first_id
    roundtrip.produce(settings(), count, first, topic)
    console.print(f"produced {count} messages, ids {first}..{first + count - 1}")


@roundtrip_app.command("consume")
def roundtrip_consume(
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
    topic: TopicOpt = None,
    batch_size: BatchSize = 200,
) -> None:
    """Consume pings into PostgreSQL and MongoDB with the shared consumer core."""
    from tomstream.logs import configure_logging
    from tomstream.shell import roundtrip

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
    from tomstream.logs import configure_logging
    from tomstream.shell import roundtrip

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


# ---------------------------------------------------------------------------------------- stats


@app.command("stats")
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Count what tomstream stores.

    Objects, sources, forced sources, alerts, raw alerts, classifiers, broker messages,
    classifications (class-id/probability pairs) and dead letters.
    """
    import json

    from tomstream.shell.stats import collect

    counts = collect(settings())
    if as_json:
        print(json.dumps(counts))
        return
    table = Table("what", "count")
    for name, count in counts.items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    console.print(table)


@app.command("status")
def status(
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            metavar="NAME=URL",
            help="A service's /metrics URL (repeatable). Default: the services the demo "
            "started, from <stack dir>/run/services.json.",
        ),
    ] = None,
) -> None:
    """One screen: each service's health, consumer lag per topic, rates and last error."""
    from tomstream.shell.status import collect, endpoints_file, load_endpoints

    if endpoint:
        pairs = [item.partition("=") for item in endpoint]
        for item, (_, sep, url) in zip(endpoint, pairs, strict=True):
            if not sep or not url:
                raise CommandError(f"--endpoint takes NAME=URL, got {item!r}")
        endpoints = {name: url for name, _, url in pairs}
    else:
        path = endpoints_file(settings().stack_dir)
        endpoints = load_endpoints(path)
        if not endpoints:
            raise CommandError(f"no services in {path}: give --endpoint NAME=URL")
    table = Table("service", "health", "lag (messages)", "consumed/s", "stored", "dead letters")
    table.add_column("last error", overflow="fold")
    statuses = collect(endpoints)
    for s in statuses:
        if s.error:
            table.add_row(s.name, f"[red]{s.error}[/]", "", "", "", "", "")
            continue
        table.add_row(
            s.name,
            "[green]ready[/]" if s.ready else "[yellow]alive, not ready[/]",
            ", ".join(f"{t}: {v:,.0f}" for t, v in sorted(s.lag.items())) or "-",
            ", ".join(f"{t}: {v:,.0f}" for t, v in sorted(s.consumed_per_s.items()) if v) or "0",
            f"{s.stored_total:,.0f}",
            f"{s.dead_lettered_total:,.0f}",
            s.last_error or "-",
        )
    console.print(table)
    if not all(s.ready and s.error is None for s in statuses):
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------- report

OutDir = Annotated[
    Path, typer.Option("--out", metavar="DIR", help="Where to write the PNG and the CSV.")
]


@report_app.command("delays")
def report_delays(out: OutDir = Path("report")) -> None:
    """DESC-style delay histograms per broker and classifier (log10 seconds).

    full = our ingest - alert publish; broker = classification Kafka time - alert publish;
    TOM = our ingest - classification Kafka time. Writes delays.png and delays.csv.
    """
    from tomstream.shell import report

    stats = report.delays(settings(), out)
    table = Table("broker", "classifier", "delay", "messages", "p50 s", "p90 s", "p99 s")
    for s in stats:
        table.add_row(
            s.broker, s.classifier, s.delay, f"{s.count:,}",
            f"{s.p50_s:.3f}", f"{s.p90_s:.3f}", f"{s.p99_s:.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"wrote {out / 'delays.png'} and {out / 'delays.csv'}")


@report_app.command("throughput")
def report_throughput(out: OutDir = Path("report")) -> None:
    """Alerts and classifications stored per second over the run (throughput.png, .csv)."""
    from tomstream.shell import report

    peaks = report.throughput(settings(), out)
    for name, peak in peaks.items():
        console.print(f"peak {name}: {peak:,} per second")
    console.print(f"wrote {out / 'throughput.png'} and {out / 'throughput.csv'}")


# ----------------------------------------------------------------------------------------- demo


@app.command("demo")
def demo(
    objects: Annotated[int, typer.Option(min=1, help="Synthetic objects.")] = 3000,
    days: Annotated[int, typer.Option(min=1, help="Nights of synthetic survey.")] = 30,
    seed: Annotated[int, typer.Option(help="Synthetic survey seed.")] = 1,
    snana: Annotated[
        Path | None,
        typer.Option(
            help="Stream a real ELAsTiCC2 SNANA FITS set (directory or .tar.bz2) instead."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where the plots, the summary and the logs go.")] = Path(
        "demo-output"
    ),
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep everything running until Ctrl-C.")
    ] = False,
    api_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the HTTP API (127.0.0.1).")
    ] = 8000,
) -> None:
    """The main job: the whole system end to end on a simulated survey.

    Brings up the local stack (unless servers are given in the environment), migrates,
    checks Kafka and both stores with a round trip, starts every service, streams a synthetic
    survey through the fake broker with a progress bar per stage, and prints a summary.
    """
    from tomstream.shell.demo import DemoOptions, run_demo, summary_table, write_summary
    from tomstream.storage.migrations import migrate

    options = DemoOptions(objects, days, seed, snana, out, serve, api_port)
    console.rule("1. local stack")
    stack_up()
    console.rule("2. database migrations")
    applied = migrate(settings().postgres_dsn)
    console.print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
    console.rule("3. round trip through Kafka into both stores")
    _roundtrip(200)
    result = run_demo(settings(), options, console)
    console.print(summary_table(result, options))
    write_summary(result, out / "summary.json")
    console.print(f"summary written to {out / 'summary.json'}")


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    """Entry point: one clear line instead of a traceback for a user's mistake."""
    import psycopg

    from tomstream.shell.stack import StackError

    try:
        app()
    except (SettingsError, StackError, CommandError) as exc:
        print(f"tomstream: {exc}", file=sys.stderr)
        sys.exit(1 if not isinstance(exc, SettingsError) else 2)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"tomstream: cannot use PostgreSQL ({settings().postgres_dsn}): {reason}",
            file=sys.stderr,
        )
        sys.exit(1)

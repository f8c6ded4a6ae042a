"""The ``tomstream sim`` commands: ``load``, ``synth`` and ``send``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tomstream.cli_options import CommandError

if TYPE_CHECKING:
    import psycopg

    from tomstream.services.sim.storage import Counts

# The commands import numpy, astropy, psycopg and Kafka only when they run, so that every other
# `tomstream` command starts as fast as before `sim` was registered.

sim_app = typer.Typer(
    help="The simulated survey: load ELAsTiCC2 SNANA light curves or synthesise a survey, then "
    "stream its alerts to the alert topics day by day, as the DESC TOM did for ELAsTiCC2.",
    no_args_is_help=True,
)
console = Console(highlight=False)

DEFAULT_OBJECTS = 3000
DEFAULT_SEED = 0
DEFAULT_START_MJD = 60796.0
DEFAULT_DAYS = 30
DEFAULT_DDF_FRACTION = 0.01


@contextmanager
def _sim_errors() -> Iterator[None]:
    """Turn the failures a user can fix into one line (a CommandError)."""
    import psycopg
    from confluent_kafka import KafkaException

    from tomstream.services.sim.storage import SimError

    try:
        yield
    except SimError as exc:
        raise CommandError(str(exc)) from None
    except KafkaException as exc:
        raise CommandError(f"Kafka: {exc}") from None
    except psycopg.errors.UndefinedTable as exc:
        missing = exc.diag.message_primary
        raise CommandError(f"{missing}: run `tomstream db migrate` first") from None
    except psycopg.OperationalError as exc:
        first_line = (str(exc).strip().splitlines() or ["unreachable"])[0]
        raise CommandError(f"PostgreSQL: {first_line}") from None


@contextmanager
def _connect() -> Iterator[psycopg.Connection]:
    import psycopg

    from tomstream.config import settings

    with psycopg.connect(
        settings().postgres_dsn,
        autocommit=True,
        connect_timeout=5,
        application_name="tomstream-sim",
    ) as conn:
        yield conn


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _print_counts(
    title: str, read: tuple[str, Counts], new: Counts, total: Counts, seconds: float
) -> None:
    table = Table("", "objects", "alerts", "forced sources", title=title)
    for label, counts in (read, ("new", new), ("in the sim tables", total)):
        table.add_row(
            label, f"{counts.objects:,}", f"{counts.alerts:,}", f"{counts.forced_sources:,}"
        )
    console.print(table)
    console.print(
        f"{new.objects:,} new objects, {new.alerts:,} new alerts, "
        f"{new.forced_sources:,} new forced sources in {seconds:.1f} s"
    )


@sim_app.command("load")
def load(
    path: Annotated[
        Path,
        typer.Argument(
            help="A directory holding *_HEAD.FITS.gz / *_PHOT.FITS.gz pairs (searched "
            "recursively), or a .tar / .tar.bz2 / .tar.gz archive of one.",
            show_default=False,
        ),
    ],
) -> None:
    """Load an ELAsTiCC2 SNANA FITS set into the simulation's tables.

    With the DESC TOM's rules: diaObjectId = SNID; every epoch is a forced source with id
    SNID*100000 + its index; epochs with PHOTFLAG & 4096 are diaSources and alerts
    (alertId = diaSourceId); fluxes are scaled to nJy (zero point 31.4); an object with more
    than 1000 epochs is DDF. Host galaxies and the truth (gentype, peak MJD, …) are kept.
    Loading the same files again adds nothing.
    """
    from tomstream.services.sim import snana, storage

    started = time.monotonic()
    given = new = storage.Counts()
    with _sim_errors(), _connect() as conn, snana.snana_set(path) as pairs, _progress() as bar:
        task = bar.add_task("loading", total=len(pairs))
        for pair in pairs:
            bar.update(task, description=pair.head.name.removesuffix(".gz"))
            batch = snana.read_pair(pair)
            given += storage.batch_counts(batch)
            new += storage.write_batch(conn, batch)
            bar.advance(task)
        bar.update(task, description=f"{len(pairs)} file pairs")
        total = storage.table_counts(conn)
    seconds = time.monotonic() - started
    _print_counts(f"sim load {path.name}", ("in the files", given), new, total, seconds)


@sim_app.command("synth")
def synth_command(
    objects: Annotated[
        int, typer.Option("--objects", metavar="N", help="How many objects to synthesise.")
    ] = DEFAULT_OBJECTS,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            metavar="S",
            help="Random seed: the same options give the same survey. Object ids depend on it, "
            "so two seeds never collide and a seed run twice adds nothing.",
        ),
    ] = DEFAULT_SEED,
    start_mjd: Annotated[
        float, typer.Option("--start-mjd", metavar="MJD", help="First night of the survey.")
    ] = DEFAULT_START_MJD,
    days: Annotated[
        int, typer.Option("--days", metavar="D", help="Nights the survey lasts.")
    ] = DEFAULT_DAYS,
    ddf_fraction: Annotated[
        float,
        typer.Option(
            "--ddf-fraction",
            metavar="F",
            help="Fraction of objects in deep-drilling fields (visited ten times a night; their "
            "alerts go to both DDF topics).",
        ),
    ] = DEFAULT_DDF_FRACTION,
) -> None:
    """Fill the simulation's tables with a synthetic ELAsTiCC-shaped survey.

    SN Ia / II / Ib/c, kilonovae, M-dwarf flares and AGN (ELAsTiCC2 gentypes), with host
    galaxies, observed in ugrizY on a WFD cadence with weather gaps (and a few deep-drilling
    fields); an epoch with S/N > 5 is a detection and makes an alert. Every night has
    detections, so `tomstream sim send --added-days 1` streams the survey night by night.
    """
    from pydantic import ValidationError

    from tomstream.services.sim import storage, synth
    from tomstream.services.sim.storage import SimError

    started = time.monotonic()
    with _sim_errors():
        try:
            spec = synth.SynthSpec(
                objects=objects,
                seed=seed,
                start_mjd=start_mjd,
                days=days,
                ddf_fraction=ddf_fraction,
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            option = str(error["loc"][0]).replace("_", "-")
            raise SimError(f"invalid --{option}: {error['msg']}") from None
        given = new = storage.Counts()
        with _connect() as conn, _progress() as bar:
            task = bar.add_task(f"synthesising {spec.objects:,} objects", total=spec.objects)
            for batch in synth.generate(spec):
                given += storage.batch_counts(batch)
                new += storage.write_batch(conn, batch)
                bar.advance(task, len(batch))
            total = storage.table_counts(conn)
    seconds = time.monotonic() - started
    _print_counts(f"sim synth (seed {spec.seed})", ("synthesised", given), new, total, seconds)
    console.print(
        f"survey nights MJD {spec.start_mjd:g} … {spec.start_mjd + spec.days:g}: stream the "
        f"first with `tomstream sim send --through-mjd {spec.start_mjd + 0.5:g}`"
    )


@sim_app.command("send")
def send(
    through_mjd: Annotated[
        float | None,
        typer.Option(
            "--through-mjd",
            metavar="MJD",
            help="Send the unsent alerts whose diaSource is at or before this MJD.",
        ),
    ] = None,
    added_days: Annotated[
        float | None,
        typer.Option(
            "--added-days",
            metavar="N",
            help="Continue from the last alert sent: send through floor(last + 0.5) + N + 0.5, "
            "i.e. N more simulated days (a day ends at MJD x.5, 8:00 in Chile). Counted from "
            "the last alert, so N days without any alert send nothing and move nothing on.",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            metavar="ALERTS_PER_S",
            help="Send at most this many alerts per second.",
            show_default="as fast as possible",
        ),
    ] = None,
) -> None:
    """Stream the unsent alerts in time order to the alert topics (ELAsTiCC2 v0_9_1 Avro).

    Give exactly one of --through-mjd and --added-days. WFD objects' alerts go to alerts-wfd;
    DDF objects' to alerts-ddf-full (365 days of history) and alerts-ddf-limited (30 days).
    Each alert carries the object's earlier diaSources of the last 365 days and, from half a
    day after its first detection on, its forced photometry (from 30 days before the first
    detection). Alerts are marked sent once Kafka confirmed them, so a repeated or restarted
    send goes on where the last one stopped (only a crash between Kafka's confirmation and
    the database update, a few milliseconds a batch, can send one batch again).
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.sim import storage
    from tomstream.services.sim.alerts import ALERT_TOPICS
    from tomstream.services.sim.send import AlertSender, resolve_through_mjd
    from tomstream.services.sim.storage import SimError

    configure_logging("WARNING", service="sim")
    with _sim_errors(), _connect() as conn:
        if rate is not None and rate <= 0:
            raise SimError("--rate must be a positive number of alerts per second")
        through = resolve_through_mjd(conn, through_mjd, added_days)
        total = storage.count_unsent(conn, through)
        sender = AlertSender(settings(), conn, rate=rate)
        with _progress() as bar:
            task = bar.add_task(f"sending alerts through MJD {through:g}", total=total)
            summary = sender.run(through, on_batch=lambda sent: bar.advance(task, sent))
    per_topic = ", ".join(f"{topic} {summary.messages[topic]:,}" for topic in ALERT_TOPICS)
    speed = summary.alerts / summary.seconds if summary.seconds else 0.0
    console.print(
        f"sent {summary.alerts:,} alerts of {summary.objects:,} objects through MJD "
        f"{summary.through_mjd:g} ({per_topic}) in {summary.seconds:.1f} s, {speed:,.0f} alerts/s"
    )

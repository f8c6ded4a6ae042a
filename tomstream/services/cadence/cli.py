"""``tomstream cadence run | sweep`` and ``tomstream fake-facility``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tomstream.cli_options import CommandError, ExitOnIdle, GroupId, console

if TYPE_CHECKING:
    from tomstream.services.cadence.config import CadenceConfig

cadence_app = typer.Typer(
    help="Event-driven cadences: status events in, observation requests out.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Cadence configuration (strategy plugins by dotted path, facilities with their "
        "status maps and parameter models) (default: $TOMSTREAM_CADENCE_CONFIG, else the "
        "built-in strategies and the FAKE facility).",
    ),
]


def _config(path: Path | None) -> CadenceConfig:
    from tomstream.services.cadence.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as error:
        raise CommandError(str(error)) from None


@cadence_app.command("run")
def run(config: ConfigOption = None, exit_on_idle: ExitOnIdle = None) -> None:
    """The cadence worker (faust): decide on every observation-status event.

    For each status change it records the status, runs the cadence's strategy, applies the stop
    conditions (max_observations, max_consecutive_failures, end_time, a user's stop or cancel),
    validates the new request against the facility's parameter model and writes the trigger
    to cadence-triggers through the outbox, all in one transaction: a repeated or late event,
    or a crash at any point, never yields a second request for the same step. The outbox
    relay runs in this process. Metrics on TOMSTREAM_METRICS_HOST:PORT.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.cadence.app import run as run_worker
    from tomstream.services.cadence.service import SERVICE

    configure_logging(settings().log_level, service=SERVICE)
    run_worker(settings(), _config(config), exit_on_idle_s=exit_on_idle)


@cadence_app.command("sweep")
def sweep(config: ConfigOption = None) -> None:
    """Re-evaluate active cadences left waiting by a lost event, and exit.

    Picks the active cadences whose latest observation is terminal but not followed up, or
    whose end_time has passed, and decides for them exactly as the worker would (same locks,
    same idempotent request ids): safe to run at any time, alongside the worker.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.cadence.service import SERVICE
    from tomstream.services.cadence.sweep import sweep as run_sweep

    configure_logging(settings().log_level, service=f"{SERVICE}-sweep")
    report, published = run_sweep(settings(), _config(config))
    console.print(
        f"swept {report.examined} cadence(s): {report.emitted} request(s) emitted, "
        f"{report.ended} cadence(s) finished, stopped or paused; "
        f"{published} outbox event(s) published"
    )


def fake_facility(
    success_rate: Annotated[
        float,
        typer.Option(
            "--success-rate", min=0.0, max=1.0, help="Probability that an observation succeeds."
        ),
    ] = 0.8,
    latency: Annotated[
        float,
        typer.Option(
            "--latency", metavar="SECONDS", min=0.0, help="Time from PENDING to the outcome."
        ),
    ] = 1.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds the outcomes (with each request id).")
    ] = 0,
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
) -> None:
    """A stand-in telescope: consumes cadence-triggers and reports to observation-status.

    Each request id is taken once: it reports PENDING with an observation id at once, then,
    after --latency seconds, COMPLETED (with probability --success-rate) or one of the LCO
    failure words (WINDOW_EXPIRED, FAILURE_LIMIT_REACHED, NOT_ATTEMPTED). The outcome depends
    only on --seed and the request id, so a replay reports the same.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.cadence.fake_facility import SERVICE
    from tomstream.services.cadence.fake_facility import run as run_facility

    configure_logging(settings().log_level, service=SERVICE)
    run_facility(
        settings(),
        success_rate=success_rate,
        latency_s=latency,
        seed=seed,
        group_id=group_id,
        exit_on_idle_s=exit_on_idle,
    )

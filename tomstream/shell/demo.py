"""``tomstream demo``: the whole system, end to end, on a synthetic (or real) survey.

1. the local stack (or the servers in the environment) and the migrations;
2. every service as a supervised child process (logs in ``<out>/logs``);
3. a survey: ``sim synth`` (or ``sim load`` of a SNANA set), streamed by ``sim send`` while
   progress bars follow alerts sent, ingested and classified;
4. a summary: counts (``tomstream stats``), throughput, delay percentiles, the report plots.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tomstream.client import wait_until_ready
from tomstream.config import Settings
from tomstream.kafka import Outgoing, deliver, make_producer
from tomstream.shell import demo_api, report
from tomstream.shell.stats import collect, count_dead_letters
from tomstream.shell.supervisor import ServiceSpec, Supervisor, run_tomstream
from tomstream.storage.postgres import Postgres


def services(api_port: int) -> tuple[ServiceSpec, ...]:
    return (
        ServiceSpec("ingest", ("ingest",), "cyan"),
        ServiceSpec("fakebroker", ("fakebroker",), "magenta"),
        ServiceSpec("broker-poll", ("broker-poll",), "green"),
        ServiceSpec("cadence", ("cadence", "run"), "yellow"),
        ServiceSpec(
            "fake-facility",
            ("fake-facility", "--latency", "1", "--success-rate", "0.8", "--seed", "1"),
            "blue",
        ),
        ServiceSpec(
            "api",
            ("api", "--port", str(api_port)),
            "bright_white",
            metrics_url=f"http://127.0.0.1:{api_port}/metrics",
        ),
    )


_PROGRESS_SQL = {
    "sent": "SELECT count(*) FROM sim.alert WHERE sent_at IS NOT NULL",
    "ingested": "SELECT count(DISTINCT alert_id) FROM alert_receipt",
    "classified": "SELECT count(DISTINCT alert_id) FROM broker_message",
}


@dataclass(frozen=True)
class DemoOptions:
    objects: int = 3000
    days: int = 30
    seed: int = 1
    snana: Path | None = None
    out: Path = Path("demo-output")
    serve: bool = False
    api_port: int = 8000
    timeout_s: float = 900.0


@dataclass
class DemoResult:
    counts: dict[str, int]
    alerts_this_run: int
    stream_seconds: float
    delays: list[report.DelayStats]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def alerts_per_second(self) -> float:
        return self.alerts_this_run / self.stream_seconds if self.stream_seconds else 0.0


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> DemoResult:
    env = dict(os.environ)
    supervisor = Supervisor(env, options.out / "logs", console)
    console.rule("services")
    for spec in services(options.api_port):
        child = supervisor.start(spec)
        console.print(f"started [{spec.colour}]{spec.name}[/] (metrics {child.metrics_url})")
    supervisor.write_endpoints(settings.stack_dir / "run" / "services.json")
    try:
        result = _stream_survey(settings, options, env, supervisor, console)
        result.extra.update(_api_steps(settings, options, env, console))
        if options.serve:
            console.print("[bold]--serve[/]: everything keeps running; Ctrl-C stops it.")
            _wait_for_interrupt(supervisor)
        return result
    finally:
        console.rule("stopping")
        codes = supervisor.stop()
        # uvicorn re-raises SIGTERM after its clean shutdown: -15 is a clean stop too.
        console.print(
            "stopped: "
            + ", ".join(
                f"{name} ({'clean' if code in (0, -signal.SIGTERM) else f'exit {code}'})"
                for name, code in codes.items()
            )
        )


def _stream_survey(
    settings: Settings,
    options: DemoOptions,
    env: dict[str, str],
    supervisor: Supervisor,
    console: Console,
) -> DemoResult:
    console.rule("survey")
    if options.snana:
        console.print(run_tomstream(env, "sim", "load", str(options.snana)).strip())
    else:
        synth = ["--objects", str(options.objects), "--days", str(options.days)]
        console.print(
            run_tomstream(env, "sim", "synth", *synth, "--seed", str(options.seed)).strip()
        )
    before = _progress_counts(settings)
    through = _last_alert_mjd(settings) + 1
    total = _count(settings, "SELECT count(*) FROM sim.alert WHERE midpointtai <= %s", through)
    console.rule("streaming")
    started = time.monotonic()
    sender = subprocess.Popen(
        [sys.executable, "-m", "tomstream", "sim", "send", "--through-mjd", f"{through:.5f}"],
        env=env,
        stdout=(options.out / "logs" / "sim-send.log").open("a"),
        stderr=subprocess.STDOUT,
    )
    _follow(settings, total, sender, supervisor, options.timeout_s, console)
    stream_seconds = time.monotonic() - started
    _show_dead_letters(settings, console)
    after = _progress_counts(settings)
    delays = report.delays(settings, options.out)
    report.throughput(settings, options.out)
    return DemoResult(
        counts=collect(settings),
        alerts_this_run=after["ingested"] - before["ingested"],
        stream_seconds=stream_seconds,
        delays=delays,
    )


def _api_steps(
    settings: Settings, options: DemoOptions, env: dict[str, str], console: Console
) -> dict[str, str]:
    url = f"http://127.0.0.1:{options.api_port}"
    console.rule("the API")
    wait_until_ready(url)
    password, token = demo_api.create_demo_user(env, options.out)
    console.print(f"demo user [bold]{demo_api.DEMO_USER}[/], token [bold]{token}[/]")
    console.print(f"password in {options.out / 'demo-password'}")
    mjd_now = _last_alert_mjd(settings)
    done = demo_api.spectrum_cycle(url, password, mjd_now, console)
    objectid = _count(settings, "SELECT min(diaobject_id) FROM diaobject")
    done.update(demo_api.cadence(url, token, objectid, console))
    done.update(
        {
            "API docs": f"{url}/docs",
            "API metrics": f"{url}/metrics",
            "bearer token": token,
        }
    )
    return done


def _follow(
    settings: Settings,
    total: int,
    sender: subprocess.Popen[bytes],
    supervisor: Supervisor,
    timeout_s: float,
    console: Console,
) -> None:
    """Progress bars until every alert is sent, ingested and classified."""
    columns = (
        TextColumn("{task.description:>18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console) as progress:
        tasks = {
            stage: progress.add_task(f"alerts {stage}", total=total) for stage in _PROGRESS_SQL
        }
        while True:
            counts = _progress_counts(settings)
            for stage, task in tasks.items():
                progress.update(task, completed=min(counts[stage], total))
            if sender.poll() not in (None, 0):
                raise RuntimeError("sim send failed: see the logs in the output directory")
            if dead := supervisor.exited():
                raise RuntimeError(f"a service stopped: {dead}")
            if all(counts[stage] >= total for stage in _PROGRESS_SQL) and sender.poll() == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream did not complete within {timeout_s:.0f} s")
            time.sleep(0.5)


def _show_dead_letters(settings: Settings, console: Console, count: int = 3) -> None:
    """Send a few undecodable messages: the services set them aside and carry on."""
    before = count_dead_letters(settings)
    deliver(
        make_producer(settings),
        (
            Outgoing(settings.topic("alerts-wfd"), f"demo: not an alert #{i}".encode())
            for i in range(count)
        ),
    )
    deadline = time.monotonic() + 60
    while (now := count_dead_letters(settings)) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError("the undecodable messages did not reach the dead-letter topic")
        time.sleep(0.5)
    console.print(
        f"sent {count} undecodable messages to {settings.topic('alerts-wfd')}: "
        f"{now - before} new dead letters in {settings.topic('alerts-wfd')}.dlq, services running"
    )


def _progress_counts(settings: Settings) -> dict[str, int]:
    return dict(zip(_PROGRESS_SQL, _scalars(settings, *_PROGRESS_SQL.values()), strict=True))


def _count(settings: Settings, sql: str, *params: object) -> int:
    (value,) = _scalars(settings, sql, params=params)
    return int(value or 0)


def _last_alert_mjd(settings: Settings) -> float:
    (value,) = _scalars(settings, "SELECT max(midpointtai) FROM sim.alert")
    if value is None:
        raise RuntimeError("the simulation has no alerts to send")
    return float(value)


def _scalars(settings: Settings, *queries: str, params: tuple[object, ...] = ()) -> list[Any]:
    """The first value of each query, over one connection."""
    postgres = Postgres(settings.postgres_dsn, application_name="tomstream-demo")
    try:
        conn = postgres.connection()
        rows = [conn.execute(sql, params or None).fetchone() for sql in queries]
    finally:
        postgres.close()
    return [row[0] if row else None for row in rows]


def _wait_for_interrupt(supervisor: Supervisor) -> None:
    try:
        while not supervisor.exited():
            time.sleep(1)
    except KeyboardInterrupt:
        return


def summary_table(result: DemoResult, options: DemoOptions) -> Table:
    table = Table("what", "value", title="tomstream demo")
    for name, count in result.counts.items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    table.add_row("alerts streamed this run", f"{result.alerts_this_run:,}")
    table.add_row(
        "throughput (sent → ingested)",
        f"{result.alerts_per_second:,.0f} alerts/s over {result.stream_seconds:.1f} s",
    )
    for s in result.delays:
        if s.delay == "full":
            table.add_row(
                f"full delay {s.classifier}",
                f"p50 {s.p50_s:.2f} s, p90 {s.p90_s:.2f} s, p99 {s.p99_s:.2f} s",
            )
    for name, value in result.extra.items():
        table.add_row(name, value)
    table.add_row("plots", f"{options.out / 'delays.png'}, {options.out / 'throughput.png'}")
    table.add_row("service logs", str(options.out / "logs" / "services.log"))
    return table


def write_summary(result: DemoResult, path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "counts": result.counts,
                "alerts_this_run": result.alerts_this_run,
                "stream_seconds": result.stream_seconds,
                "alerts_per_second": result.alerts_per_second,
            },
            indent=2,
        )
    )

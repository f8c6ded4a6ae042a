"""Runs tomstream services as supervised child processes, with their logs in one place.

Each child's output goes to ``<log dir>/<service>.log`` and, prefixed with the service name,
to ``<log dir>/services.log``; errors are also echoed to the console, coloured by
service. Stopping sends SIGTERM (the services then store and commit their batch) and SIGKILL
only to a child that has not exited after a grace period.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape

# Echoed to the console; everything else only goes to the log files. (Warnings are routine
# here: the demo itself sends undecodable messages to show the dead-letter topic.)
_ALARMING = ("[error", "[critical", "Traceback", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    args: tuple[str, ...]  # the tomstream subcommand and its options
    colour: str
    #: Where the service serves /metrics, if not on TOMSTREAM_METRICS_PORT (e.g. the API).
    metrics_url: str | None = None


@dataclass
class Child:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    metrics_url: str
    pump: threading.Thread


def run_tomstream(env: dict[str, str], *args: str) -> str:
    """Run a tomstream command to completion; return its output, raise if it failed."""
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tomstream {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    def __init__(self, env: dict[str, str], log_dir: Path, console: Console) -> None:
        self._env = env
        self._log_dir = log_dir
        self._console = console
        self.children: dict[str, Child] = {}
        log_dir.mkdir(parents=True, exist_ok=True)
        self._combined = (log_dir / "services.log").open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def start(self, spec: ServiceSpec) -> Child:
        port = free_port()
        env = {**self._env, "TOMSTREAM_METRICS_PORT": str(port), "TOMSTREAM_LOG_LEVEL": "INFO"}
        process = subprocess.Popen(
            [sys.executable, "-m", "tomstream", *spec.args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches the supervisor only, which
            # then stops the children in order instead of all dying at once.
            start_new_session=True,
        )
        own_log = (self._log_dir / f"{spec.name}.log").open("a", encoding="utf-8")
        assert process.stdout is not None
        pump = threading.Thread(
            target=self._pump, args=(spec, process.stdout, own_log), daemon=True
        )
        pump.start()
        child = Child(spec, process, spec.metrics_url or f"http://127.0.0.1:{port}/metrics", pump)
        self.children[spec.name] = child
        return child

    def _pump(self, spec: ServiceSpec, stream: IO[bytes], own_log: IO[str]) -> None:
        with own_log:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                own_log.write(line + "\n")
                with self._lock:
                    self._combined.write(f"{spec.name:>13} | {line}\n")
                    self._combined.flush()
                if any(word in line for word in _ALARMING):
                    self._console.print(
                        f"[{spec.colour}]{spec.name:>13}[/] | {escape(line[:300])}", highlight=False
                    )

    def exited(self) -> list[tuple[str, int]]:
        """Children that are no longer running, with their exit status."""
        return [
            (name, code)
            for name, child in self.children.items()
            if (code := child.process.poll()) is not None
        ]

    def write_endpoints(self, path: Path) -> None:
        """Where each service serves /metrics, for ``tomstream status``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({name: child.metrics_url for name, child in self.children.items()}, indent=2)
        )

    def stop(self, grace_s: float = 30.0) -> dict[str, int]:
        """SIGTERM every child, then wait; SIGKILL what is still running after ``grace_s``."""
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        codes = {}
        for name, child in self.children.items():
            try:
                codes[name] = child.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                codes[name] = child.process.wait()
            child.pump.join(5)
        self._combined.close()
        return codes

"""The local stack: real Kafka, PostgreSQL and FerretDB on 127.0.0.1, without Docker.

``up`` installs what is missing (from Maven Central, Debian and the Go module proxy), starts
what is not running and waits until each server answers; ``down`` stops only the processes
it started (pid files checked against their command lines). A server whose connection
setting is given in the environment is external: it is probed, never started or stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tomstream.config import Settings
from tomstream.shell.stack.servers import (
    FerretDB,
    Kafka,
    Postgres,
    Say,
    Server,
    StackError,
)

__all__ = ["ServerState", "Stack", "StackError"]

REPO_ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerState:
    name: str
    address: str
    managed: str  # "local" or "external"
    pid: int | None
    error: str | None  # None when the server answers

    @property
    def healthy(self) -> bool:
        return self.error is None


class Stack:
    """Kafka, PostgreSQL and FerretDB, in the order they are started."""

    def __init__(self, settings: Settings) -> None:
        args = (settings.stack_dir, settings.cache_dir, REPO_ROOT)
        self.servers: list[Server] = [Postgres(*args), FerretDB(*args), Kafka(*args)]

    def up(self, say: Say) -> list[ServerState]:
        """Install, start and wait for every local server; probe the external ones."""
        for server in self.servers:
            if server.external or server.installed():
                continue
            say(f"installing {server.name} (first run)")
            started = time.monotonic()
            server.install(say)
            say(f"  installed {server.name} in {time.monotonic() - started:.0f} s")
        for server in self.servers:
            if not server.external and not server.process.running():
                say(f"starting {server.name}")
                server.start(say)
        states = []
        for server in self.servers:
            error = self._wait_ready(server)
            if error is not None:
                where = "" if server.external else f"\n--- {server.process.log_path} ---\n"
                tail = "" if server.external else server.process.log_tail()
                raise StackError(f"{server.name} did not answer: {error}{where}{tail}")
            server.after_ready(say)
            states.append(self._state(server, error=None))
        return states

    def down(self, say: Say) -> None:
        """Stop the stack's own processes, in reverse order; external servers are left alone."""
        for server in reversed(self.servers):
            if server.external:
                say(f"{server.name}: external ({server.address}), left alone")
            elif server.process.stop(server.stop_signal):
                say(f"{server.name}: stopped")
            else:
                say(f"{server.name}: not running")

    def status(self) -> list[ServerState]:
        return [
            self._state(server, "not running")
            if not server.external and not server.process.running()
            else self._state(server, server.probe())
            for server in self.servers
        ]

    def env(self) -> dict[str, str]:
        """The connection settings of the stack, as environment variables."""
        return {server.env_var: server.address for server in self.servers}

    def _state(self, server: Server, error: str | None) -> ServerState:
        pid = None if server.external else server.process.pid()
        if not server.external and pid is None and error is None:
            error = "answers, but is not the stack's own process"
        return ServerState(
            name=server.name,
            address=server.address,
            managed="external" if server.external else "local",
            pid=pid,
            error=error,
        )

    @staticmethod
    def _wait_ready(server: Server) -> str | None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            error = server.probe()
            if error is None:
                return None
            if not server.external and not server.process.running():
                return "the process exited"
            if time.monotonic() > deadline:
                return error
            time.sleep(0.5)

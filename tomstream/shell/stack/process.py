"""Detached server processes tracked by pid files.

A pid file alone is not proof of ownership (pids are reused), so every managed process is
also recognised by a marker string in its command line: the stack never signals a process
it did not start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManagedProcess:
    """One server process: its pid file, its log, and the marker that identifies it."""

    name: str
    pid_path: Path
    log_path: Path
    marker: str

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            cmdline, stat = "", ""
        # A zombie (state Z) has exited; its command line is empty anyway.
        alive = self.marker in cmdline and ") Z " not in stat
        if not alive:
            self.pid_path.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def spawn(
        self,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> int:
        """Start ``argv`` in its own session, detached from us, logging to ``log_path``."""
        if self.marker not in " ".join(argv):
            raise ValueError(f"{self.name}: marker {self.marker!r} is not in its command line")
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                user=user,
                group=user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid_path.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Signal our process and wait for it to end (SIGKILL after ``timeout``).

        Returns True if a process was stopped, False if none of ours was running.
        """
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while not self._reap(pid):
                time.sleep(0.1)
        self.pid_path.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _reap(self, pid: int) -> bool:
        """True once ``pid`` has exited (reaping it if it is our child)."""
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return True
        except ChildProcessError:
            pass
        return self.pid() is None

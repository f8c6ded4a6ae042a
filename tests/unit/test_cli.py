"""The ``tomstream`` command tree: every command explains itself."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import typer

from tomstream.shell.cli import app


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # typer vendors its own click, so groups are recognised by their sub-commands.
    paths = [path]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*path, name))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_foundation_commands_exist() -> None:
    for path in [
        ("stack", "up"),
        ("stack", "down"),
        ("stack", "status"),
        ("stack", "env"),
        ("db", "migrate"),
        ("roundtrip", "run"),
        ("roundtrip", "consume"),
        ("demo",),
    ]:
        assert path in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "tomstream")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", *path, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_consumers_offer_exit_on_idle_and_group_id() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", "roundtrip", "consume", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "--exit-on-idle" in result.stdout
    assert "--group-id" in result.stdout


def test_stack_env_prints_external_settings_as_exports() -> None:
    env = {
        **os.environ,
        "TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "TOMSTREAM_POSTGRES_DSN": "postgresql://u@db:5432/tom",
        "TOMSTREAM_MONGODB_URI": "mongodb://mongo:27017/",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", "stack", "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "export TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS=kafka:9092" in lines
    assert "export TOMSTREAM_POSTGRES_DSN=postgresql://u@db:5432/tom" in lines
    assert "export TOMSTREAM_MONGODB_URI=mongodb://mongo:27017/" in lines

"""``tomstream demo`` end to end on a small synthetic survey, against the real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Isolated

pytestmark = pytest.mark.integration


def _running_with_prefix(prefix: str) -> list[int]:
    """Pids of live processes whose environment carries this deployment's topic prefix."""
    marker = f"TOMSTREAM_TOPIC_PREFIX={prefix}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # a process that ended meanwhile, or not ours to read
            continue
    return pids


def test_demo_summary_matches_stats_and_leaves_nothing_running(
    isolated: Callable[[str], Isolated], tmp_path: Path
) -> None:
    deployment = isolated("demo")
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "tomstream", "demo", "--objects", "150", "--days", "5",
         "--seed", "7", "--out", str(out)],
        env=deployment.env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "round trip complete" in result.stdout
    assert "tomstream demo" in result.stdout  # the summary table

    summary = json.loads((out / "summary.json").read_text())
    stats = subprocess.run(
        [sys.executable, "-m", "tomstream", "stats", "--json"],
        env=deployment.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert summary["counts"] == json.loads(stats.stdout)
    assert all(value > 0 for value in summary["counts"].values()), summary["counts"]
    assert summary["alerts_this_run"] == summary["counts"]["alerts"]
    for plot in ("delays.png", "throughput.png", "delays.csv", "throughput.csv"):
        assert (out / plot).stat().st_size > 0
    assert (out / "logs" / "services.log").stat().st_size > 0
    assert _running_with_prefix(deployment.settings.topic_prefix) == []

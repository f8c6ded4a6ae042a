"""The demo's API steps: a spectrum cycle (as RESSPECT and observers do it, through the DESC
``tom_client.py`` login flow) and a cadence on the fake facility (with a bearer token)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from tomstream.client import TomClient
from tomstream.shell.supervisor import run_tomstream

DEMO_USER = "demo"


def create_demo_user(env: dict[str, str], out: Path) -> tuple[str, str]:
    """A user with a random password (in ``out/demo-password``) and a bearer token."""
    password_file = out / "demo-password"
    password_file.write_text(secrets.token_urlsafe(18) + "\n")
    password_file.chmod(0o600)
    run_tomstream(env, "users", "add", DEMO_USER, "--password-file", str(password_file))
    token = run_tomstream(env, "users", "token", DEMO_USER).strip().splitlines()[-1]
    return password_file.read_text().strip(), token


def _ok(response: requests.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def spectrum_cycle(url: str, password: str, mjd_now: float, console: Console) -> dict[str, str]:
    """Hot transients → ask for spectra → wanted list → plan → report → known spectra."""
    client = TomClient(url, username=DEMO_USER, password=password)
    hot = _ok(
        client.post(
            "elasticc2/gethottransients",
            json={"mjd_now": mjd_now, "detected_in_last_days": 5, "return_format": 0},
        ),
        "gethottransients",
    )["diaobject"]
    objectids = [o["objectid"] for o in hot][:5]
    if not objectids:
        raise RuntimeError("no hot transients to ask spectra for")
    _ok(
        client.post(
            "elasticc2/askforspectrum",
            json={
                "requester": "tomstream demo",
                "objectids": objectids,
                "priorities": [5, 4, 3, 2, 1][: len(objectids)],
            },
        ),
        "askforspectrum",
    )
    wanted = _ok(
        client.post("elasticc2/spectrawanted", json={"mjd_now": mjd_now}), "spectrawanted"
    )["wantedspectra"]
    target = objectids[0]
    _ok(
        client.post("elasticc2/planspectrum", json={"objectid": target, "facility": "demo scope"}),
        "planspectrum",
    )
    _ok(
        client.post(
            "elasticc2/reportspectruminfo",
            json={
                "objectid": target,
                "facility": "demo scope",
                "mjd": mjd_now,
                "z": 0.1,
                "classid": 2222,
            },
        ),
        "reportspectruminfo",
    )
    known = _ok(
        client.post("elasticc2/getknownspectruminfo", json={"objectid": target}),
        "getknownspectruminfo",
    )["spectra"]
    console.print(
        f"spectrum cycle: {len(hot)} hot transients, asked spectra of {len(objectids)}, "
        f"{len(wanted)} wanted, planned and reported object {target}: {len(known)} known"
    )
    return {
        "spectrum cycle (API)": f"{len(hot)} hot, {len(objectids)} asked, {len(wanted)} wanted, "
        f"{len(known)} reported"
    }


def cadence(url: str, token: str, objectid: int, console: Console) -> dict[str, str]:
    """A cadence of three observations on the fake facility, followed to its end."""
    headers = {"Authorization": f"Bearer {token}"}
    now = datetime.now(UTC)
    body = {
        "facility": "FAKE",
        "parameters": {
            "window": {
                "start": now.isoformat(),
                "end": (now + timedelta(minutes=30)).isoformat(),
            },
            "filter": "r",
        },
        "target": {"objectid": objectid},
        "strategy": "ResumeCadenceAfterFailure",
        "frequency_hours": 0.001,  # a few seconds: the demo's nights are short
        "stop": {"max_observations": 3},
    }
    created = _ok(requests.post(f"{url}/api/cadences", json=body, headers=headers, timeout=10),
                  "create a cadence")  # fmt: skip
    cadence_id = created["id"]
    deadline = time.monotonic() + 120
    while True:
        state = _ok(
            requests.get(f"{url}/api/cadences/{cadence_id}", headers=headers, timeout=10),
            "read the cadence",
        )
        if not state["active"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    statuses = [o.get("status") for o in state["observations"]]
    console.print(
        f"cadence {cadence_id} on FAKE: {len(statuses)} observations "
        f"({', '.join(str(s) for s in statuses)}), now {state.get('state', 'inactive')}"
    )
    return {"cadence (API)": f"{len(statuses)} observations, {state.get('state')}"}

"""A client for tomstream's HTTP API that behaves like the DESC TOM's ``tom_client.py``.

Code written for the DESC TOM switches over by changing the URL::

    from tomstream.client import TomClient

    tom = TomClient("http://127.0.0.1:8000", username="rknop", passwordfile="~/secrets/tom_passwd")
    res = tom.post("elasticc2/gethottransients", json={"detected_since_mjd": 60380})
    sne = res.json()["diaobject"]

Like the DESC client it logs in the way a Django site expects a browser to (GET the login page
for its ``csrftoken`` cookie, POST the form with the token, then send the token in the
``X-CSRFToken`` header of every request), and ``request``/``post``/``get``/``put`` are thin
front-ends to one :class:`requests.Session`, returning :class:`requests.Response`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"  # `tomstream api`'s default address


class TomClient:
    """A logged-in session with a tomstream (or DESC TOM) server.

    Give either ``password`` or ``passwordfile`` (a file whose first line is the password).
    With ``connect=False`` call :meth:`connect` yourself before the first request.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        username: str | None = None,
        password: str | None = None,
        passwordfile: str | Path | None = None,
        connect: bool = True,
    ) -> None:
        self._url = url.rstrip("/")
        self._username = username
        self._password = password
        self._rqs: requests.Session | None = None
        if self._password is None:
            if passwordfile is None:
                raise RuntimeError("Must give either password or passwordfile. ")
            with Path(passwordfile).expanduser().open() as ifp:
                self._password = ifp.readline().strip()
        if connect:
            self.connect()

    def connect(self) -> None:
        """Log in: the login page's CSRF cookie, the login form, then the CSRF header."""
        self._rqs = requests.session()
        res = self._rqs.get(f"{self._url}/accounts/login/")
        if res.status_code != 200:
            raise RuntimeError(
                f"Got status {res.status_code} from first attempt to connect to {self._url}"
            )
        res = self._rqs.post(
            f"{self._url}/accounts/login/",
            data={
                "username": self._username,
                "password": self._password,
                "csrfmiddlewaretoken": self._rqs.cookies["csrftoken"],
            },
        )
        if res.status_code != 200:
            raise RuntimeError(f"Failed to log in; http status: {res.status_code}")
        if "Please enter a correct" in res.text:
            # What a Django site answers (with status 200) to a wrong password.
            raise RuntimeError("Failed to log in: the server answered with its login form again")
        self._rqs.headers.update({"X-CSRFToken": self._rqs.cookies["csrftoken"]})

    def request(
        self, method: str = "GET", page: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send a request to ``<url>/<page>``; keyword arguments go to ``requests.request``."""
        if self._rqs is None:
            raise RuntimeError("Not connected: call connect() first")
        return self._rqs.request(method=method, url=f"{self._url}/{page}", **kwargs)

    def post(self, page: str | None = None, **kwargs: Any) -> requests.Response:
        """Shorthand for ``request("POST", ...)``."""
        return self.request("POST", page, **kwargs)

    def get(self, page: str | None = None, **kwargs: Any) -> requests.Response:
        """Shorthand for ``request("GET", ...)``."""
        return self.request("GET", page, **kwargs)

    def put(self, page: str | None = None, **kwargs: Any) -> requests.Response:
        """Shorthand for ``request("PUT", ...)``."""
        return self.request("PUT", page, **kwargs)


def wait_until_ready(url: str, timeout_s: float = 60.0) -> None:
    """Wait until the API at ``url`` answers ``/readyz`` with 200 (it can use its database)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{url.rstrip('/')}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API at {url} was not ready within {timeout_s:.0f} s")
        time.sleep(0.3)

"""The spectra API app without any server: routes, schema, authentication before data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tomstream.client import TomClient
from tomstream.config import Settings
from tomstream.services.spectra_api.config import ApiSettings
from tomstream.services.spectra_api.main import create_app

# Nothing listens there: any request that reaches the database fails, so a test that passes
# proves the answer came before any data was read.
NO_DATABASE = Settings(
    postgres_dsn="postgresql://nobody@127.0.0.1:1/none",
    mongodb_uri="mongodb://127.0.0.1:1/",
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(NO_DATABASE, ApiSettings(outbox_relay=False))
    with TestClient(app) as client:
        yield client


ENDPOINTS = [
    "ltcv", "gethottransients", "askforspectrum", "spectrawanted", "planspectrum",
    "removespectrumplan", "reportspectruminfo", "getknownspectruminfo", "getalert", "classids",
    "classifiers_json",
]  # fmt: skip
GET_TOO = ["ltcv", "gethottransients", "getalert", "classids", "classifiers_json"]


def test_the_schema_lists_every_desc_endpoint_without_trailing_slashes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for name in ENDPOINTS:
        assert "post" in paths[f"/elasticc2/{name}"]
        assert "422" not in paths[f"/elasticc2/{name}"]["post"]["responses"]
    assert "put" in paths["/elasticc2/brokermessage/"]
    assert {"/healthz", "/readyz", "/metrics", "/accounts/login/"} <= set(paths)
    assert set(schema["components"]["securitySchemes"]) == {"session", "bearer"}
    ltcv_ok = paths["/elasticc2/ltcv"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ltcv_ok["schema"] == {"$ref": "#/components/schemas/LightCurvesResponse"}


@pytest.mark.parametrize("name", ENDPOINTS)
def test_anonymous_calls_get_401_and_no_data(client: TestClient, name: str) -> None:
    response = client.post(f"/elasticc2/{name}", json={"objectid": 1, "not_a_key": True})
    assert response.status_code == 401
    assert response.json() == {
        "status": "error",
        "error": "authentication required: log in at /accounts/login/ or send a bearer token",
    }


@pytest.mark.parametrize("name", GET_TOO)
def test_read_endpoints_answer_get_too(client: TestClient, name: str) -> None:
    assert client.get(f"/elasticc2/{name}").status_code == 401  # routed, then refused


def test_only_put_pushes_broker_messages(client: TestClient) -> None:
    assert client.put("/elasticc2/brokermessage/", json={}).status_code == 401
    assert client.post("/elasticc2/brokermessage/", json={}).status_code == 405


def test_a_malformed_authorization_header_is_401(client: TestClient) -> None:
    response = client.post("/elasticc2/classids", headers={"Authorization": "Basic eDp5"})
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]


def test_unknown_paths_are_json_404(client: TestClient) -> None:
    response = client.get("/elasticc2/nope")
    assert response.status_code == 404
    assert response.json()["status"] == "error"


def test_login_page_sets_the_csrf_cookie(client: TestClient) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    token = response.cookies["csrftoken"]
    assert f'value="{token}"' in response.text


def test_a_login_without_the_csrf_token_is_refused_before_the_password_is_checked(
    client: TestClient,
) -> None:
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={"username": "u", "password": "p", "csrfmiddlewaretoken": "wrong"},
    )
    assert response.status_code == 403
    assert client.post("/accounts/login/", json={"username": "u"}).status_code == 400


def test_health_is_public_and_readiness_needs_the_database(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "error"
    assert "tomstream_api_request_seconds" in client.get("/metrics").text


def test_tom_client_needs_a_password_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="password"):
        TomClient("http://127.0.0.1:1", username="u", connect=False)
    secret = tmp_path / "passwd"
    secret.write_text("  s3cret \nsecond line\n")
    client = TomClient("http://127.0.0.1:1/", username="u", passwordfile=secret, connect=False)
    assert client._password == "s3cret"  # the first line, stripped, as DESC's client reads it
    assert client._url == "http://127.0.0.1:1"
    with pytest.raises(RuntimeError, match="connect"):
        client.post("elasticc2/classids")

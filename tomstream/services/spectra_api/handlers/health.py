"""``/healthz`` (the process answers), ``/readyz`` (and can use PostgreSQL), ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from tomstream.services.spectra_api.context import ApiContext, get_context
from tomstream.services.spectra_api.errors import error_response
from tomstream.services.spectra_api.models import ErrorResponse, Ok
from tomstream.services.spectra_api.responses import Json

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Ok)
def healthz() -> Json:
    return Json({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Ok,
    responses={503: {"model": ErrorResponse, "description": "PostgreSQL does not answer"}},
)
def readyz(context: Annotated[ApiContext, Depends(get_context)]) -> Json:
    try:
        with context.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # any failure to get an answer means "not ready"
        return error_response(503, f"PostgreSQL does not answer: {type(error).__name__}")
    return Json({"status": "ok"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics() -> Response:
    """Prometheus metrics: request counts and latencies, plus the process's own."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

"""Every error the API returns is ``{"status": "error", "error": "<what is wrong>"}``.

Client mistakes are 4xx with a message that names the key at fault; only a bug or an outage is
a 5xx (and then the message says nothing about internals).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pymongo.errors
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tomstream.services.spectra_api.responses import Json

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """A request the API refuses, with the HTTP status and the message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Json:
    return Json({"status": "error", "error": message}, status, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """pydantic's errors as one line a client can act on, e.g. ``unknown key 'foo'``."""
    return "; ".join(_describe(error) for error in errors[:5])


def _describe(error: Any) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    where = ".".join(location)
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"unknown key {where!r}"
    if kind == "missing":
        return f"missing key {where!r}" if where else "missing request body"
    if kind == "json_invalid":
        return "the request body is not valid JSON"
    if not where and kind in {"model_attributes_type", "model_type", "dict_type"}:
        return "the request body must be a JSON object (Content-Type: application/json)"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def install(app: FastAPI) -> None:
    """Make every error, including FastAPI's own, answer in the DESC error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> Json:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> Json:
        return error_response(400, describe_validation_errors(error.errors()))

    @app.exception_handler(ValidationError)
    async def _invalid_value(_: Request, error: ValidationError) -> Json:
        return error_response(400, describe_validation_errors(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Json:
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(pymongo.errors.ConnectionFailure)
    async def _unavailable(request: Request, error: Exception) -> Json:
        log.warning("store unavailable", path=request.url.path, error=_first_line(error))
        return error_response(503, "a database is unavailable; try again shortly")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Json:
        # Starlette re-raises the error after this answer, and the server logs its traceback.
        return error_response(500, "internal error: the server failed to answer this request")

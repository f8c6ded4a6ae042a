"""The cadence HTTP API: observation templates, cadences and their observations.

:func:`make_router` returns a FastAPI ``APIRouter``; the app that serves it (the spectrum API's,
``tomstream/services/spectra_api/main.py``) passes its own authentication dependency and its own
connections, so both APIs share one auth and one connection pool. Every route answers JSON;
bad input gets a 400 (an unknown id a 404) with ``{"status": "error", "error": "..."}``, as
the spectrum API does.

* ``POST /api/observation-templates`` ``{name, facility, parameters}`` → 201 with its ``id``;
  ``GET /api/observation-templates``; ``GET`` / ``DELETE /api/observation-templates/{id}``;
  ``POST /api/observation-templates/from-observation`` ``{request_id, name?}``.
* ``POST /api/cadences`` ``{template_id | (facility, parameters), target, strategy,
  frequency_hours, anchor?, stop?}`` → 201 with its ``id``; the first request is emitted.
  ``GET /api/cadences``; ``GET /api/cadences/{id}`` (with observations and history);
  ``POST /api/cadences/{id}/stop`` and ``/resume``.
* ``GET /api/observations?cadence_id=...``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tomstream.services.cadence import storage
from tomstream.services.cadence.config import CadenceConfig, load_config
from tomstream.services.cadence.service import (
    CadenceNotFound,
    NewCadence,
    StopConditions,
    Target,
    create_cadence,
    resume_cadence,
    stop_cadence,
    utcnow,
)
from tomstream.services.cadence.storage import CadenceRow, ObservationRow
from tomstream.services.cadence.strategies.base import Anchor
from tomstream.storage.postgres import BIGINT_MAX, storable_text

T = TypeVar("T")


class ApiError(Exception):
    """A 4xx answer: ``{"status": "error", "error": message}``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _describe(errors: Any) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: "
        f"{str(e['msg']).removeprefix('Value error, ')}"
        for e in errors
    )


class _ErrorsAsJson(APIRoute):
    """Turns our errors and request validation errors into the project's error body (here,
    so the router behaves the same in whichever app includes it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return _error(400, _describe(error.errors()))
            except ApiError as error:
                return _error(error.status_code, error.message)
            except CadenceNotFound as error:
                return _error(404, str(error))

        return handle


def _found(row: T | None, message: str, status_code: int = 404) -> T:
    if row is None:
        raise ApiError(status_code, message)
    return row


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "error": message}, status_code=status_code)


# ------------------------------------------------------------------------------------ models

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def _storable(value: Any) -> Any:
    """Every string of a request body, keys included, must fit PostgreSQL text: no NUL and no
    lone surrogate (JSON can carry both)."""
    if isinstance(value, str):
        storable_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    return value


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _only_storable_text(cls, data: Any) -> Any:
        return _storable(data)


class ErrorOut(BaseModel):
    status: Literal["error"] = "error"
    error: str


# The error answers, documented in the OpenAPI schema (each has an ErrorOut body).
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": meaning}
    for status, meaning in [
        (400, "a mistake in the request (the message says)"),
        (401, "not logged in, or an invalid token"),
        (403, "CSRF check failed"),
        (503, "the database is unavailable"),
    ]
}
_UNKNOWN = {404: {"model": ErrorOut, "description": "no such template, cadence or observation"}}


class TemplateIn(_Input):
    name: str = Field(min_length=1, max_length=200)
    facility: str = Field(max_length=100)
    parameters: dict[str, Any]


class TemplateFromObservation(_Input):
    request_id: str = Field(min_length=1, max_length=100)
    name: str | None = Field(None, min_length=1, max_length=200)


class TemplateOut(BaseModel):
    id: int
    name: str
    facility: str
    parameters: dict[str, Any]
    created_at: datetime


class TargetIn(_Input):
    """``{objectid}`` (a DIA object; its position is looked up) or ``{name, ra, dec}``."""

    objectid: int | None = Field(None, ge=0, le=BIGINT_MAX)
    name: str | None = Field(None, min_length=1, max_length=200)
    ra: float | None = Field(None, ge=0, lt=360)
    dec: float | None = Field(None, ge=-90, le=90)

    @model_validator(mode="after")
    def _one_kind(self) -> TargetIn:
        named = None not in (self.name, self.ra, self.dec)
        if (self.objectid is None) == (not named):
            raise ValueError("give either objectid, or name, ra and dec")
        return self


class CadenceIn(_Input):
    template_id: int | None = Field(None, ge=1, le=BIGINT_MAX)
    facility: str | None = Field(None, max_length=100)
    parameters: dict[str, Any] | None = None
    observation_type: str | None = Field(None, min_length=1, max_length=100)
    target: TargetIn
    strategy: str = Field(min_length=1, max_length=300)
    frequency_hours: float = Field(gt=0, le=24 * 365 * 10, description="at most ten years")
    anchor: Anchor = "requested"
    options: dict[str, Any] = {}
    stop: StopConditions = StopConditions()

    @model_validator(mode="after")
    def _template_or_parameters(self) -> CadenceIn:
        if (self.template_id is None) == (self.facility is None or self.parameters is None):
            raise ValueError("give either template_id, or facility and parameters")
        return self


class WindowOut(BaseModel):
    start: datetime | None
    end: datetime | None


class ObservationOut(BaseModel):
    request_id: str
    cadence_id: int
    step: int
    follows: str | None
    reason: str
    facility: str
    observation_id: str | None
    status: str | None
    reported_status: str | None
    requested_window: WindowOut
    scheduled_window: WindowOut
    parameters: dict[str, Any]

    @classmethod
    def of(cls, row: ObservationRow) -> ObservationOut:
        return cls(
            request_id=row.request_id,
            cadence_id=row.cadence_id,
            step=row.step,
            follows=row.follows,
            reason=row.reason,
            facility=row.facility,
            observation_id=row.observation_id,
            status=row.status,
            reported_status=row.reported_status,
            requested_window=WindowOut(start=row.requested_start, end=row.requested_end),
            scheduled_window=WindowOut(start=row.scheduled_start, end=row.scheduled_end),
            parameters=row.parameters,
        )


class DecisionOut(BaseModel):
    decided_at: datetime
    source: str
    request_id: str | None
    event: dict[str, Any] | None
    outcome: str
    detail: str
    emitted: list[str]


class CadenceOut(BaseModel):
    id: int
    active: bool
    state: str
    state_reason: str | None
    strategy: str
    facility: str
    observation_type: str
    target: dict[str, Any]
    frequency_hours: float
    anchor: str
    options: dict[str, Any]
    stop: dict[str, Any]
    template_id: int | None
    last_decision: str | None
    last_decision_at: datetime | None
    created_at: datetime | None

    @classmethod
    def of(cls, row: CadenceRow) -> CadenceOut:
        return cls(
            id=row.cadence_id,
            active=row.state == "active",
            state=row.state,
            state_reason=row.state_reason,
            strategy=row.strategy,
            facility=row.facility,
            observation_type=row.observation_type,
            target=row.target,
            frequency_hours=row.frequency_hours,
            anchor=row.anchor,
            options=row.options,
            stop=row.stop_conditions,
            template_id=row.template_id,
            last_decision=row.last_decision,
            last_decision_at=row.last_decision_at,
            created_at=row.created_at,
        )


class CadenceDetail(CadenceOut):
    observations: list[ObservationOut]
    history: list[DecisionOut]


# ------------------------------------------------------------------------------------ router


def make_router(
    require_user: Callable[..., Any],
    connection: Callable[..., Iterator[psycopg.Connection]],
    *,
    config: CadenceConfig | None = None,
) -> APIRouter:
    """The cadence routes, every one behind ``require_user`` (the including app's auth).

    ``connection`` is a dependency of the including app that yields a connection inside one
    transaction, committed when the handler returns normally (the spectrum API's: one of its
    pool's connections).
    """
    cadences_config = config or load_config()
    router = APIRouter(
        dependencies=[Depends(require_user)],
        route_class=_ErrorsAsJson,
        responses=_ERRORS,
        tags=["cadences"],
    )

    def template_out(row: dict[str, Any]) -> TemplateOut:
        return TemplateOut(id=row.pop("template_id"), **row)

    def checked_template(facility_name: str, parameters: dict[str, Any]) -> dict[str, Any]:
        try:
            return cadences_config.facility(facility_name).validate(parameters, None)
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    @router.post("/api/observation-templates", status_code=201, response_model=TemplateOut)
    def add_template(
        body: TemplateIn, conn: psycopg.Connection = Depends(connection)
    ) -> TemplateOut:
        parameters = checked_template(body.facility, body.parameters)
        return template_out(storage.insert_template(conn, body.name, body.facility, parameters))

    @router.get("/api/observation-templates", response_model=list[TemplateOut])
    def list_templates(conn: psycopg.Connection = Depends(connection)) -> list[TemplateOut]:
        return [template_out(row) for row in storage.templates(conn)]

    @router.post(
        "/api/observation-templates/from-observation",
        status_code=201,
        response_model=TemplateOut,
        responses=_UNKNOWN,
    )
    def template_from_observation(
        body: TemplateFromObservation, conn: psycopg.Connection = Depends(connection)
    ) -> TemplateOut:
        row = _found(
            storage.observation(conn, body.request_id),
            f"no observation with request id {body.request_id!r}",
        )
        name = body.name or f"from {row.request_id}"
        return template_out(storage.insert_template(conn, name, row.facility, row.parameters))

    @router.get(
        "/api/observation-templates/{template_id}", response_model=TemplateOut, responses=_UNKNOWN
    )
    def get_template(
        template_id: Id, conn: psycopg.Connection = Depends(connection)
    ) -> TemplateOut:
        row = storage.template(conn, template_id)
        return template_out(_found(row, f"no observation template {template_id}"))

    @router.delete("/api/observation-templates/{template_id}", status_code=204, responses=_UNKNOWN)
    def delete_template(
        template_id: Id, conn: psycopg.Connection = Depends(connection)
    ) -> Response:
        if not storage.delete_template(conn, template_id):
            raise ApiError(404, f"no observation template {template_id}")
        return Response(status_code=204)

    @router.post("/api/cadences", status_code=201, response_model=CadenceDetail)
    def add_cadence(
        body: CadenceIn, conn: psycopg.Connection = Depends(connection)
    ) -> CadenceDetail:
        facility, parameters = body.facility, body.parameters
        if body.template_id is not None:
            template = _found(
                storage.template(conn, body.template_id),
                f"no observation template {body.template_id}",
                status_code=400,  # a reference inside the body, not the resource asked for
            )
            facility, parameters = template["facility"], template["parameters"]
        assert facility is not None and parameters is not None  # checked by CadenceIn
        target = Target(**body.target.model_dump())
        if body.target.objectid is not None:
            position = _found(
                storage.diaobject_position(conn, body.target.objectid),
                f"target: no diaobject {body.target.objectid}",
                status_code=400,
            )
            target = Target(objectid=body.target.objectid, ra=position[0], dec=position[1])
        new = NewCadence(
            facility=facility,
            observation_type=body.observation_type
            or str(parameters.get("observation_type", "IMAGING")),
            parameters=parameters,
            target=target,
            strategy=body.strategy,
            frequency_hours=body.frequency_hours,
            anchor=body.anchor,
            options=body.options,
            stop=body.stop,
            template_id=body.template_id,
        )
        try:
            row = create_cadence(conn, cadences_config, new, utcnow())
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return detail(conn, row)

    @router.get("/api/cadences", response_model=list[CadenceOut])
    def list_cadences(
        conn: psycopg.Connection = Depends(connection),
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    ) -> list[CadenceOut]:
        return [CadenceOut.of(row) for row in storage.cadences(conn, limit, offset)]

    @router.get("/api/cadences/{cadence_id}", response_model=CadenceDetail, responses=_UNKNOWN)
    def get_cadence(
        cadence_id: Id, conn: psycopg.Connection = Depends(connection)
    ) -> CadenceDetail:
        return detail(conn, _found(storage.cadence(conn, cadence_id), f"no cadence {cadence_id}"))

    @router.post(
        "/api/cadences/{cadence_id}/stop", response_model=CadenceDetail, responses=_UNKNOWN
    )
    def stop(cadence_id: Id, conn: psycopg.Connection = Depends(connection)) -> CadenceDetail:
        return detail(conn, stop_cadence(conn, cadences_config, cadence_id))

    @router.post(
        "/api/cadences/{cadence_id}/resume", response_model=CadenceDetail, responses=_UNKNOWN
    )
    def resume(cadence_id: Id, conn: psycopg.Connection = Depends(connection)) -> CadenceDetail:
        return detail(conn, resume_cadence(conn, cadences_config, cadence_id, utcnow()))

    @router.get("/api/observations", response_model=list[ObservationOut], responses=_UNKNOWN)
    def list_observations(
        cadence_id: Annotated[
            int, Query(ge=1, le=BIGINT_MAX, description="the cadence whose observations to list")
        ],
        conn: psycopg.Connection = Depends(connection),
    ) -> list[ObservationOut]:
        _found(storage.cadence(conn, cadence_id), f"no cadence {cadence_id}")
        rows = storage.observations_of(conn, [cadence_id])[cadence_id]
        return [ObservationOut.of(row) for row in rows]

    return router


def detail(conn: psycopg.Connection, row: CadenceRow) -> CadenceDetail:
    observations = storage.observations_of(conn, [row.cadence_id])[row.cadence_id]
    return CadenceDetail(
        **CadenceOut.of(row).model_dump(),
        observations=[ObservationOut.of(obs) for obs in observations],
        history=[DecisionOut(**item) for item in storage.history(conn, row.cadence_id)],
    )

"""``/elasticc2/*``: the DESC TOM's endpoints, same paths, keys and shapes.

Thin: each handler validates the body (its model), checks the caller (``auth``), and hands the
work to ``services``. POST everywhere; ``ltcv``, ``gethottransients``, ``getalert``, ``classids``
and ``classifiers_json`` answer GET too (with the same JSON body, as the DESC TOM did).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from tomstream.services.spectra_api import taxonomy
from tomstream.services.spectra_api.auth import Broker, User, authenticate
from tomstream.services.spectra_api.context import ApiContext, get_context
from tomstream.services.spectra_api.models import (
    AlertResponse,
    AskForSpectrumRequest,
    AskForSpectrumResponse,
    BrokerMessageResponse,
    BrokerMessages,
    ClassIdsResponse,
    ClassifiersResponse,
    ErrorResponse,
    GetAlertRequest,
    HotTransientsRequest,
    KnownSpectrumInfoRequest,
    KnownSpectrumInfoResponse,
    LightCurvesResponse,
    LtcvRequest,
    PlanSpectrumRequest,
    PlanSpectrumResponse,
    RemoveSpectrumPlanRequest,
    RemoveSpectrumPlanResponse,
    ReportSpectrumInfoRequest,
    ReportSpectrumInfoResponse,
    SpectraWantedRequest,
    SpectraWantedResponse,
)
from tomstream.services.spectra_api.responses import Json
from tomstream.services.spectra_api.services import brokers, catalog, lightcurves, spectra

Context = Annotated[ApiContext, Depends(get_context)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "a mistake in the request (the message says)"},
    401: {"model": ErrorResponse, "description": "not logged in, or an invalid token"},
    403: {"model": ErrorResponse, "description": "CSRF check failed, or a role is missing"},
    503: {"model": ErrorResponse, "description": "the database is unavailable"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "an object (or alert) tomstream does not know"}
}

router = APIRouter(
    prefix="/elasticc2",
    tags=["elasticc2"],
    dependencies=[Depends(authenticate)],
    responses=_ERRORS,
    default_response_class=Json,
)


def _read_also_by_get(path: str, endpoint: Any) -> None:
    # The DESC TOM answered GET like POST (body included); not in the OpenAPI schema, where a
    # GET with a body has no defined meaning.
    router.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)


@router.post("/ltcv", response_model=LightCurvesResponse, responses=_UNKNOWN)
def ltcv(body: LtcvRequest, context: Context) -> Json:
    """Light curves of the given objects (ascending object id).

    Photometry: forced photometry, patched with the object's detections at epochs without a
    forced point; up to `mjd_now` if given. Fluxes in nJy (`zp` 31.4).
    """
    return Json({"status": "ok", "diaobject": lightcurves.ltcv(context, body)})


@router.post("/gethottransients", response_model=LightCurvesResponse)
def gethottransients(
    context: Context, body: Annotated[HotTransientsRequest, Body()] = HotTransientsRequest()
) -> Json:
    """Objects detected (a diaSource) since `detected_since_mjd`, or in the last
    `detected_in_last_days` (default 30) before `mjd_now` (default: now), with light curves."""
    return Json({"status": "ok", "diaobject": lightcurves.hot_transients(context, body)})


@router.post("/askforspectrum", response_model=AskForSpectrumResponse, responses=_UNKNOWN)
def askforspectrum(body: AskForSpectrumRequest, user: User, context: Context) -> Json:
    """Ask for spectra of objects, with priorities 1 (low) to 5 (high); asking again for an
    object updates its priority and time."""
    with context.connection() as conn:
        count = spectra.ask(conn, body, user)
    return Json({"status": "ok", "message": "wanted spectra created", "num": count})


@router.post("/spectrawanted", response_model=SpectraWantedResponse)
def spectrawanted(
    context: Context, body: Annotated[SpectraWantedRequest, Body()] = SpectraWantedRequest()
) -> Json:
    """Objects someone wants a spectrum of: requested recently, not claimed (planned) recently,
    without a recent spectrum, detected recently; by priority, then object id."""
    with context.connection() as conn:
        found = spectra.wanted(conn, body)
    return Json({"status": "ok", "wantedspectra": found})


@router.post("/planspectrum", response_model=PlanSpectrumResponse, responses=_UNKNOWN)
def planspectrum(body: PlanSpectrumRequest, user: User, context: Context) -> Json:
    """Declare that a facility plans to take a spectrum (replaces its earlier plan)."""
    with context.connection() as conn:
        return Json(spectra.plan(conn, body, user))


@router.post("/removespectrumplan", response_model=RemoveSpectrumPlanResponse)
def removespectrumplan(body: RemoveSpectrumPlanRequest, user: User, context: Context) -> Json:
    """Withdraw a facility's plan for an object."""
    with context.connection() as conn:
        return Json(spectra.remove_plan(conn, body, user))


@router.post("/reportspectruminfo", response_model=ReportSpectrumInfoResponse, responses=_UNKNOWN)
def reportspectruminfo(body: ReportSpectrumInfoRequest, user: User, context: Context) -> Json:
    """Report a spectrum taken: redshift and class (either may be null). Removes the facility's
    plan and every request for the object."""
    with context.connection() as conn:
        return Json(spectra.report(conn, body, user))


@router.post("/getknownspectruminfo", response_model=KnownSpectrumInfoResponse)
def getknownspectruminfo(
    context: Context,
    body: Annotated[KnownSpectrumInfoRequest, Body()] = KnownSpectrumInfoRequest(),
) -> Json:
    """Reported spectra matching every filter given, in MJD order."""
    with context.connection() as conn:
        found = spectra.known(conn, body)
    return Json({"status": "ok", "spectra": found})


@router.post("/getalert", response_model=AlertResponse, responses=_UNKNOWN)
def getalert(body: GetAlertRequest, context: Context) -> Json:
    """The alert as received (Avro fields), by `alertid` or by the `sourceid` that triggered
    it. Not wrapped in a status object, as in the DESC TOM."""
    with context.connection() as conn:
        return Json(catalog.alert(conn, context.mongo, body))


@router.post("/classids", response_model=ClassIdsResponse)
def classids() -> Json:
    """The ELAsTiCC2 taxonomy keyed by class id (the DESC TOM's document: match levels,
    description, the SNANA gentypes that count as the class)."""
    return Json(taxonomy.classids_document())


@router.post("/classifiers_json", response_model=ClassifiersResponse)
def classifiers_json(context: Context) -> Json:
    """The brokers' classifiers tomstream has seen, keyed by classifier id."""
    with context.connection() as conn:
        return Json(catalog.classifiers(conn))


router.add_api_route("/classids", classids, methods=["GET"], response_model=ClassIdsResponse)
router.add_api_route(
    "/classifiers_json", classifiers_json, methods=["GET"], response_model=ClassifiersResponse
)
for _path, _endpoint in (
    ("/ltcv", ltcv),
    ("/gethottransients", gethottransients),
    ("/getalert", getalert),
):
    _read_also_by_get(_path, _endpoint)


@router.put(
    "/brokermessage/",
    status_code=201,
    response_model=BrokerMessageResponse,
    responses={403: {"model": ErrorResponse, "description": "the user lacks the broker role"}},
)
def brokermessage(
    body: Annotated[BrokerMessages, Body()], broker: Broker, context: Context
) -> Json:
    """Push one brokerClassification (v0_9_1, as JSON, timestamps in ms since 1970) or a list
    of them; needs the `broker` role. Stored and deduplicated like broker_poll's Kafka path."""
    messages = body if isinstance(body, list) else [body]
    result = brokers.push(context, messages)
    location = f"/elasticc2/brokermessage/{result['brokerMessageId']}"
    return Json(result, status_code=201, headers={"Location": location})

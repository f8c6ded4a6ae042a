"""The FastAPI application: ``create_app(settings)``.

The lifespan opens the PostgreSQL pool and MongoDB client, and starts the outbox relay thread
that publishes spectrum events (``tomstream.outbox``); shutdown stops them in reverse order.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import Histogram
from psycopg_pool import ConnectionPool

from tomstream.config import Settings
from tomstream.outbox import OutboxRelay
from tomstream.services.cadence import http as cadence_http
from tomstream.services.spectra_api import errors
from tomstream.services.spectra_api.auth import authenticate
from tomstream.services.spectra_api.config import ApiSettings
from tomstream.services.spectra_api.context import ApiContext, pooled_transaction
from tomstream.services.spectra_api.handlers import accounts, elasticc2, health
from tomstream.storage.mongo import mongo_database

REQUEST_SECONDS = Histogram(
    "tomstream_api_request_seconds",
    "Time to answer an HTTP request of the spectra API",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def create_app(settings: Settings, api_settings: ApiSettings | None = None) -> FastAPI:
    api = api_settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(
            settings.postgres_dsn,
            min_size=min(2, api.pool_size),
            max_size=api.pool_size,
            # JIT compilation costs more (up to half a second) than the API's queries gain.
            kwargs={
                "autocommit": True,
                "application_name": "tomstream-api",
                "options": "-c jit=off",
            },
            open=False,
        )
        # Not waiting: the API starts (and says so on /readyz) while PostgreSQL is still down.
        pool.open(wait=False)
        mongo = mongo_database(settings)
        context = ApiContext(settings=settings, api=api, pool=pool, mongo=mongo)
        app.state.context = context
        relay = OutboxRelay(settings).start() if api.outbox_relay else None
        # A light-curve answer allocates hundreds of thousands of objects, which sets off full
        # garbage collections; frozen, the objects of start-up (the app, its modules) are no
        # longer traversed by each one (50 ms each, otherwise).
        gc.freeze()
        try:
            yield
        finally:
            if relay is not None:
                relay.stop()
            if context.push_store is not None:
                context.push_store.close()  # its MongoDB writer thread
            if context.push_postgres is not None:
                context.push_postgres.close()
            pool.close()
            mongo.client.close()

    app = FastAPI(
        title="tomstream spectra API",
        version=version("tomstream"),
        summary="The DESC TOM's elasticc2 API (light curves, hot transients, the spectrum cycle, "
        "broker pushes) served by tomstream.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # A body without a Content-Type is read as JSON, as the DESC TOM's views did.
        strict_content_type=False,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(accounts.router)
    app.include_router(elasticc2.router)
    # The cadence routes, behind this API's auth and on its connection pool.
    app.include_router(cadence_http.make_router(authenticate, pooled_transaction))
    app.middleware("http")(_measure)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        # The route's template (e.g. /elasticc2/ltcv), so unknown paths do not grow the labels.
        name = getattr(route, "path", "unmatched")
        REQUEST_SECONDS.labels(request.method, name, str(status)).observe(
            time.perf_counter() - started
        )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the 422 answers it documents by default removed (this API
    answers a bad request with 400) and the two ways to authenticate declared."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            if path.startswith("/elasticc2/"):
                operation["security"] = [{"session": []}, {"bearer": []}]
    components = schema.setdefault("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    components["securitySchemes"] = {
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "from POST /accounts/login/; unsafe methods also need X-CSRFToken",
        },
        "bearer": {"type": "http", "scheme": "bearer", "description": "tomstream users token"},
    }
    app.openapi_schema = schema
    return schema

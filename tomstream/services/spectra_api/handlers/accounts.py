"""``/accounts/login/`` and ``/accounts/logout/``: Django's login flow, which the DESC
``tom_client.py`` drives (see ``auth`` for the rules)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from tomstream.services.spectra_api import auth
from tomstream.services.spectra_api.context import ApiContext, get_context
from tomstream.services.spectra_api.errors import ApiError
from tomstream.services.spectra_api.models import ErrorResponse
from tomstream.services.spectra_api.responses import Json
from tomstream.services.spectra_api.storage import accounts

router = APIRouter(prefix="/accounts", tags=["accounts"])
Context = Annotated[ApiContext, Depends(get_context)]

CSRF_COOKIE_DAYS = 365  # as Django's CSRF_COOKIE_AGE
_FORM = "application/x-www-form-urlencoded"
_LOGIN_PAGE = """<!doctype html>
<html><head><title>tomstream: log in</title></head><body>
<form method="post" action="/accounts/login/">
<input type="hidden" name="csrfmiddlewaretoken" value="{token}">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form></body></html>
"""


def _csrf_cookie(response: Response, token: str, context: ApiContext) -> None:
    response.set_cookie(
        auth.CSRF_COOKIE,
        token,
        max_age=CSRF_COOKIE_DAYS * 86400,
        samesite="lax",
        secure=context.api.secure_cookies,
    )


@router.get("/login/", response_class=HTMLResponse)
def login_page(request: Request, context: Context) -> HTMLResponse:
    """The login form; sets the `csrftoken` cookie the login POST must echo."""
    token = request.cookies.get(auth.CSRF_COOKIE) or auth.new_secret()
    response = HTMLResponse(_LOGIN_PAGE.format(token=html.escape(token)))
    _csrf_cookie(response, token, context)
    return response


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM:
        raise ApiError(400, f"send the login as a form ({_FORM})")
    try:
        fields = parse_qs((await request.body()).decode(), strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "the form is not UTF-8") from None
    return {name: values[-1] for name, values in fields.items()}


@router.post(
    "/login/",
    responses={
        200: {"description": "logged in: `sessionid` and a new `csrftoken` cookie are set"},
        400: {"model": ErrorResponse},
        401: {"model": ErrorResponse, "description": "wrong user name or password"},
        403: {"model": ErrorResponse, "description": "CSRF check failed"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password", "csrfmiddlewaretoken"],
                        "properties": {
                            "username": {"type": "string"},
                            "password": {"type": "string"},
                            "csrfmiddlewaretoken": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
def login(
    request: Request, form: Annotated[dict[str, str], Depends(_form)], context: Context
) -> Json:
    """Log in with `username`, `password` and `csrfmiddlewaretoken` (form fields)."""
    if not auth.same_secret(form.get(auth.CSRF_FORM_FIELD), request.cookies.get(auth.CSRF_COOKIE)):
        raise ApiError(403, "CSRF check failed: GET /accounts/login/ first, then post its token")
    user_id = auth.check_password(context, form.get("username", ""), form.get("password", ""))
    if user_id is None:
        raise ApiError(401, "Please enter a correct username and password.")
    session, csrf = auth.new_secret(), auth.new_secret()
    expires = datetime.now(UTC) + timedelta(days=context.api.session_days)
    with context.connection() as conn:
        accounts.start_session(conn, auth.digest(session), user_id, csrf, expires)
    response = Json({"status": "ok", "username": form["username"]})
    response.set_cookie(
        auth.SESSION_COOKIE,
        session,
        expires=expires,
        httponly=True,
        samesite="lax",
        secure=context.api.secure_cookies,
    )
    # A new CSRF token for the new session, as Django rotates it at login.
    _csrf_cookie(response, csrf, context)
    return response


@router.post("/logout/", responses={200: {"description": "the session has ended"}})
def logout(request: Request, context: Context) -> Json:
    """End the session (the `sessionid` cookie)."""
    session = request.cookies.get(auth.SESSION_COOKIE)
    if session:
        with context.connection() as conn:
            principal = accounts.user_for_session(conn, auth.digest(session))
            if principal is not None and not auth.same_secret(
                request.headers.get(auth.CSRF_HEADER), principal.csrf_token
            ):
                raise ApiError(403, f"CSRF check failed: send the csrftoken in {auth.CSRF_HEADER}")
            accounts.end_session(conn, auth.digest(session))
    response = Json({"status": "ok"})
    response.delete_cookie(auth.SESSION_COOKIE)
    return response

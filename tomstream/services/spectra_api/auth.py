"""Who may call the API, and how they prove it.

Two ways in, both answering to the same users (``tomstream users add | token``):

- **Sessions**, the DESC ``tom_client.py`` flow: ``GET /accounts/login/`` sets a ``csrftoken``
  cookie; ``POST /accounts/login/`` with ``username``, ``password`` and ``csrfmiddlewaretoken``
  (equal to the cookie) starts a session (``sessionid`` cookie) and rotates the CSRF token; every
  later unsafe request (POST, PUT, …) must send that token in ``X-CSRFToken``. The token is bound
  to the session, so a token from another session does not pass.
- **Bearer tokens** for services: ``Authorization: Bearer <token>``; no cookies, so no CSRF.

Passwords are stored as salted scrypt hashes (memory-hard, in the standard library), session ids
and tokens (random 256-bit secrets) as SHA-256 digests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache
from typing import Annotated

from fastapi import Depends, Request

from tomstream.services.spectra_api.context import ApiContext, get_context
from tomstream.services.spectra_api.errors import ApiError
from tomstream.services.spectra_api.storage import accounts
from tomstream.services.spectra_api.storage.accounts import Principal

SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"
CSRF_FORM_FIELD = "csrfmiddlewaretoken"
BROKER_ROLE = "broker"
ROLES = (BROKER_ROLE,)
TOKEN_PREFIX = "tst_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# scrypt cost: 2^15 x 8 x 1 needs 32 MiB and about 0.1 s per hash on this project's machines.
# OWASP's minimum is 2^17 x 8 x 1 (128 MiB), more than a 2-core API host should spend per login;
# the parameters are stored with each hash, so they can be raised without invalidating old ones.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES, _KEY_BYTES = 16, 32


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$key`` with a fresh random salt (base64, no padding)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; False for a missing or malformed hash."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, _unb64(key))


@cache
def _dummy_hash() -> str:
    # Verifying against this when the user does not exist makes an unknown name take as long
    # as a wrong password, so response times do not reveal which user names exist.
    return hash_password(secrets.token_urlsafe(16))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_secret() -> str:
    """A random 256-bit secret, URL- and cookie-safe."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    return TOKEN_PREFIX + new_secret()


def digest(secret: str) -> bytes:
    """What is stored of a session id or token: high-entropy secrets need no slow hash."""
    return hashlib.sha256(secret.encode()).digest()


def same_secret(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def check_password(context: ApiContext, username: str, password: str) -> int | None:
    """The user id if the password is right, else None."""
    with context.connection() as conn:
        user = accounts.find_user(conn, username)
    if user is None:
        verify_password(password, _dummy_hash())
        return None
    return user.user_id if verify_password(password, user.password_hash) else None


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def authenticate(
    request: Request, context: Annotated[ApiContext, Depends(get_context)]
) -> Principal:
    """The calling user, from a bearer token or a session; anonymous calls get 401, a session
    request that changes something without its CSRF token 403."""
    token = _bearer_token(request)
    if token is not None:
        with context.connection() as conn:
            principal = accounts.user_for_token(conn, digest(token))
        if principal is None:
            raise ApiError(401, "invalid token", {"WWW-Authenticate": "Bearer"})
        return principal
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        with context.connection() as conn:
            principal = accounts.user_for_session(conn, digest(session))
        if principal is None:
            raise ApiError(401, "the session has expired or ended: log in again")
        if request.method not in SAFE_METHODS and not same_secret(
            request.headers.get(CSRF_HEADER), principal.csrf_token
        ):
            raise ApiError(403, f"CSRF check failed: send the session's csrftoken in {CSRF_HEADER}")
        return principal
    raise ApiError(
        401,
        "authentication required: log in at /accounts/login/ or send a bearer token",
        {"WWW-Authenticate": "Bearer"},
    )


def require_broker(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.has_role(BROKER_ROLE):
        raise ApiError(403, f"user {principal.username} lacks the '{BROKER_ROLE}' role")
    return principal


User = Annotated[Principal, Depends(authenticate)]
Broker = Annotated[Principal, Depends(require_broker)]

"""``tomstream api`` and ``tomstream users``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tomstream.cli_options import CommandError, console

users_app = typer.Typer(
    help="Users of the spectra API: create them, give them roles and bearer tokens.",
    no_args_is_help=True,
)


Host = Annotated[str, typer.Option("--host", help="Address to listen on.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]


def api(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Serve the DESC TOM's elasticc2 HTTP API (light curves, hot transients, spectrum cycle).

    Clients log in like the DESC tom_client.py (GET then POST /accounts/login/) or send
    'Authorization: Bearer <token>' (tomstream users token NAME). OpenAPI at /openapi.json,
    interactive docs at /docs, health at /healthz and /readyz, Prometheus metrics at /metrics.
    Spectrum events are published to the spectrum-events topic from this process unless
    TOMSTREAM_API_OUTBOX_RELAY=false.
    """
    import uvicorn

    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.spectra_api.main import create_app

    configure_logging(settings().log_level, service="spectra-api")
    app = create_app(settings())
    console.print(f"spectra API on http://{host}:{port} (docs: /docs, schema: /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_config=None)


def _read_password(password_file: Path | None) -> str | None:
    if password_file is None:
        return None
    try:
        # The first line, stripped: what tom_client.py does with its passwordfile.
        password = next(iter(password_file.read_text().splitlines()), "").strip()
    except OSError as error:
        raise CommandError(f"cannot read {password_file}: {error.strerror}") from None
    if not password:
        raise CommandError(f"{password_file} holds no password (its first line is empty)")
    return password


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name (what clients log in with).")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            metavar="FILE",
            help="Read the password from the first line of FILE (as tom_client.py's "
            "passwordfile). Without it the user can only use bearer tokens.",
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Give a role (repeatable): 'broker' may push classifications."),
    ] = None,
) -> None:
    """Create a user, or update one: a new password replaces the old, roles are added.

    Only a salted scrypt hash of the password is stored.
    """
    from tomstream.config import settings
    from tomstream.services.spectra_api import auth
    from tomstream.services.spectra_api.storage import accounts
    from tomstream.storage.postgres import Postgres

    roles = role or []
    unknown = sorted(set(roles) - set(auth.ROLES))
    if unknown:
        raise CommandError(f"unknown role {', '.join(unknown)} (known: {', '.join(auth.ROLES)})")
    if not name.strip() or "\x00" in name:
        raise CommandError("the user name must not be empty")
    password = _read_password(password_file)
    hashed = auth.hash_password(password) if password is not None else None
    postgres = Postgres(settings().postgres_dsn, application_name="tomstream-users")
    try:
        with postgres.transaction() as conn:
            created = accounts.upsert_user(conn, name.strip(), hashed, roles)
    finally:
        postgres.close()
    console.print(f"{'created' if created else 'updated'} user {name.strip()}")


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="An existing user.")],
) -> None:
    """Create a bearer token for a user and print it (only its hash is stored: keep it safe).

    Clients send it as 'Authorization: Bearer <token>'.
    """
    from tomstream.config import settings
    from tomstream.services.spectra_api import auth
    from tomstream.services.spectra_api.storage import accounts
    from tomstream.storage.postgres import Postgres

    token = auth.new_token()
    postgres = Postgres(settings().postgres_dsn, application_name="tomstream-users")
    try:
        with postgres.transaction() as conn:
            user = accounts.find_user(conn, name)
            if user is None:
                raise CommandError(f"no user {name}: create it with tomstream users add {name}")
            accounts.add_token(conn, user.user_id, auth.digest(token))
    finally:
        postgres.close()
    print(token)

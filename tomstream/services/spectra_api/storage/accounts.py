"""Users, sessions and tokens in PostgreSQL (migration 0005). Secrets are stored only as hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API user, and whether by session (cookies) or bearer token."""

    user_id: int
    username: str
    roles: tuple[str, ...]
    csrf_token: str | None = None  # a session's token; None for bearer tokens

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class StoredUser:
    user_id: int
    password_hash: str | None
    roles: tuple[str, ...]


def upsert_user(
    conn: psycopg.Connection, username: str, password_hash: str | None, roles: list[str]
) -> bool:
    """Create the user, or update it (a password given replaces the old one; roles are added).

    Returns True if the user was created.
    """
    row = conn.execute(
        """INSERT INTO api_user (username, password_hash, roles) VALUES (%s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET
               password_hash = coalesce(EXCLUDED.password_hash, api_user.password_hash),
               roles = ARRAY(SELECT DISTINCT unnest(api_user.roles || EXCLUDED.roles) ORDER BY 1),
               updated_at = now()
           RETURNING (xmax = 0)""",
        (username, password_hash, sorted(set(roles))),
    ).fetchone()
    assert row is not None
    return bool(row[0])


def find_user(conn: psycopg.Connection, username: str) -> StoredUser | None:
    row = conn.execute(
        "SELECT user_id, password_hash, roles FROM api_user WHERE username = %s", (username,)
    ).fetchone()
    return StoredUser(row[0], row[1], tuple(row[2])) if row else None


def add_token(conn: psycopg.Connection, user_id: int, token_hash: bytes) -> None:
    conn.execute(
        "INSERT INTO api_token (token_hash, user_id) VALUES (%s, %s)", (token_hash, user_id)
    )


def user_for_token(conn: psycopg.Connection, token_hash: bytes) -> Principal | None:
    return _principal(
        conn,
        "SELECT u.user_id, u.username, u.roles, NULL FROM api_token t "
        "JOIN api_user u USING (user_id) WHERE t.token_hash = %s",
        token_hash,
    )


def user_for_session(conn: psycopg.Connection, session_hash: bytes) -> Principal | None:
    """The session's user and CSRF token, if the session exists and has not expired."""
    return _principal(
        conn,
        "SELECT u.user_id, u.username, u.roles, s.csrf_token FROM api_session s "
        "JOIN api_user u USING (user_id) WHERE s.session_hash = %s AND s.expires_at > now()",
        session_hash,
    )


def _principal(conn: psycopg.Connection, query: str, secret_hash: bytes) -> Principal | None:
    row = conn.execute(query, (secret_hash,)).fetchone()
    return Principal(row[0], row[1], tuple(row[2]), row[3]) if row else None


def start_session(
    conn: psycopg.Connection,
    session_hash: bytes,
    user_id: int,
    csrf_token: str,
    expires_at: datetime,
) -> None:
    with conn.transaction():
        # Logins are rare: a good moment to forget the sessions that ran out.
        conn.execute("DELETE FROM api_session WHERE expires_at <= now()")
        conn.execute(
            "INSERT INTO api_session (session_hash, user_id, csrf_token, expires_at) "
            "VALUES (%s, %s, %s, %s)",
            (session_hash, user_id, csrf_token, expires_at),
        )


def end_session(conn: psycopg.Connection, session_hash: bytes) -> None:
    conn.execute("DELETE FROM api_session WHERE session_hash = %s", (session_hash,))

"""A PostgreSQL connection for a consumer: one connection, re-opened after a failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class Postgres:
    """Lazily (re)connects, so a database restart costs a retry, not the service."""

    def __init__(self, dsn: str, application_name: str = "tomstream") -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._dsn, connect_timeout=5, application_name=self._application_name
            )
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        conn = self.connection()
        try:
            with conn.transaction():
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

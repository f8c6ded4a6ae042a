"""What a request handler needs from the running app: settings and the store connections."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool, PoolTimeout
from pymongo.database import Database

from tomstream.config import Settings
from tomstream.services.spectra_api.config import ApiSettings
from tomstream.storage.postgres import Postgres


@dataclass
class ApiContext:
    settings: Settings
    api: ApiSettings
    pool: ConnectionPool
    mongo: Database[dict[str, Any]]
    # The broker push path uses broker_poll's store (one connection, classifier id cache),
    # created at the first push; pushes are serialised through it.
    push_lock: threading.Lock = field(default_factory=threading.Lock)
    push_store: Any = None
    push_postgres: Postgres | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection; use ``conn.transaction()`` for changes."""
        with self.pool.connection(timeout=10) as conn:
            yield conn

    def gather(
        self, conn: psycopg.Connection, readers: Sequence[Reader], *, parallel: bool = True
    ) -> list[Any]:
        """Run each reader (a function of a connection) and return their results in order.

        The first runs on ``conn``; with ``parallel``, each other one runs at the same time on a
        connection of its own if the pool has one free at once, else after the first on
        ``conn`` (waiting for a second connection while holding one could deadlock requests).
        """
        spares: list[psycopg.Connection] = []
        pending: list[Future[Any]] = []
        try:
            if parallel:
                for _ in readers[1:]:
                    try:
                        spares.append(self.pool.getconn(timeout=0.01))
                    except PoolTimeout:
                        break
            pending = [
                _READERS.submit(reader, spare)
                for reader, spare in zip(readers[1:], spares, strict=False)
            ]
            results = [readers[0](conn)]
            results += [future.result() for future in pending]
            results += [reader(conn) for reader in readers[1 + len(pending) :]]
            return results
        finally:
            # A spare goes back to the pool only once its reader is done with it.
            wait(pending)
            for spare in spares:
                self.pool.putconn(spare)

    def gather_each(
        self,
        conn: psycopg.Connection,
        batches: Sequence[Sequence[Reader]],
        consume: Callable[[list[Any]], T],
        *,
        parallel: bool = True,
    ) -> list[T]:
        """``consume(gather(conn, batch))`` for each batch of readers, in order. Each batch
        after the first is read in the background while the one before is consumed (so
        ``consume`` must not use ``conn``): reading and consuming use a core each."""
        if not batches:
            return []
        consumed: list[T] = []
        results = self.gather(conn, batches[0], parallel=parallel)
        for batch in batches[1:]:
            reading = _PREFETCH.submit(self.gather, conn, batch, parallel=parallel)
            try:
                consumed.append(consume(results))
            finally:
                wait([reading])  # ``conn`` is the caller's again only once no read uses it
            results = reading.result()
        consumed.append(consume(results))
        return consumed


Reader = Callable[[psycopg.Connection], Any]
T = TypeVar("T")
_READERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="reader")
# Runs gather itself for gather_each; a pool of its own, as each gather waits for _READERS.
_PREFETCH = ThreadPoolExecutor(max_workers=8, thread_name_prefix="prefetch")


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def pooled_transaction(request: Request) -> Iterator[psycopg.Connection]:
    """A dependency: a pooled connection in one transaction, committed when the handler
    returns normally (what the cadence routes write through)."""
    with get_context(request).connection() as conn, conn.transaction():
        yield conn

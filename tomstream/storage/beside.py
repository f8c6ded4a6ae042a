"""Two stores written at once: the MongoDB write in a thread while PostgreSQL's runs.

Each write waits mostly on its server (two servers, two cores), so overlapping them saves most
of the shorter one. Both are idempotent, so if either fails the caller retries both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any


class Beside:
    """A single background thread that runs one write beside the caller's."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    @contextmanager
    def running(self, write: Callable[..., Any], *args: Any) -> Iterator[None]:
        """Run ``write(*args)`` during the block; re-raise its error once the block is done.

        If the block itself fails, its error wins, after the background write finished (so a
        retry never overlaps a write still in flight).
        """
        future = self._pool.submit(write, *args)
        try:
            yield
        except BaseException:
            wait([future])
            raise
        future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

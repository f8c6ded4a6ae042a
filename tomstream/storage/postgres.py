"""A PostgreSQL connection for a consumer: one connection, re-opened after a failure."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, repeat

import psycopg

BYTEA_OID = 17
BIGINT_MAX = 2**63 - 1


def storable_text(value: str) -> str:
    """``value`` if PostgreSQL text can hold it, else ValueError saying why.

    Text cannot hold NUL, and UTF-8 cannot encode lone surrogates (which JSON escapes can
    produce): an endpoint refuses both rather than fail in the database.
    """
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


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


def copy_insert(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    on_conflict: str = "ON CONFLICT DO NOTHING",
    *,
    prepacked: Collection[str] = (),
) -> int:
    """Bulk insert through COPY into a temporary staging table; return the rows inserted.

    COPY is several times faster than INSERTs but cannot skip or merge conflicting rows; the
    staging table (same column types, no constraints, emptied at commit) lets one
    ``INSERT … SELECT … ON CONFLICT`` do that. Call inside a transaction.

    Binary COPY with the columns' types given: psycopg then packs values in C, about four
    times cheaper per row than its text format. Columns named in ``prepacked`` hold values
    already in PostgreSQL's binary format (:func:`binary_array`): they go as they are, since
    psycopg builds arrays element by element in Python (~3.5 µs for 20 numbers).
    """
    column_list = ", ".join(columns)
    stage = f"stage_{table}_{zlib.crc32(column_list.encode()):08x}"
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
        f"SELECT {column_list} FROM {table} WITH NO DATA"
    )
    types = [  # before COPY, which holds the connection; bytea's dumper sends bytes as they are
        BYTEA_OID if column in prepacked else oid
        for column, oid in zip(columns, _column_types(conn, table, columns), strict=True)
    ]
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage} {on_conflict}"
        )
        return cursor.rowcount


_COLUMN_TYPES: dict[tuple[str, tuple[str, ...]], list[int]] = {}


def _column_types(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> list[int]:
    """The type oids of a table's columns, in the given order (fixed by the migrations)."""
    key = (table, tuple(columns))
    if key not in _COLUMN_TYPES:
        found = dict(
            conn.execute(
                "SELECT attname, atttypid FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            ).fetchall()
        )
        _COLUMN_TYPES[key] = [int(found[column]) for column in columns]
    return _COLUMN_TYPES[key]


@dataclass(frozen=True)
class ArrayElement:
    """An array element type: its oid, ``struct`` code and size in bytes."""

    oid: int
    code: str
    size: int


INT2 = ArrayElement(21, "h", 2)
FLOAT4 = ArrayElement(700, "f", 4)


def binary_array(element: ArrayElement, values: Sequence[float]) -> bytes:
    """A one-dimensional array without NULLs, as PostgreSQL's ``array_recv`` reads it.

    Out-of-range values raise ``struct.error`` (``OverflowError`` for floats), as psycopg's
    own dumpers would refuse them.
    """
    count = len(values)
    if count == 0:
        return _EMPTY_ARRAY_HEADER.pack(0, 0, element.oid)
    # Header: 1 dimension, no NULLs, element oid, length, lower bound 1; each element is
    # preceded by its size.
    sized = chain.from_iterable(zip(repeat(element.size, count), values, strict=True))
    return _array_struct(element.code, count).pack(1, 0, element.oid, count, 1, *sized)


_EMPTY_ARRAY_HEADER = struct.Struct(">3i")


@functools.cache
def _array_struct(code: str, count: int) -> struct.Struct:
    return struct.Struct(f">5i{('i' + code) * count}")

"""PostgreSQL I/O of the cadence service (tables of migration 0006).

Decisions are made under a row lock of their cadence (``SELECT … FOR UPDATE``, always in
cadence id order, so the stream and the sweep never deadlock), from the state read in the same
transaction; the writes of a batch of decisions go out pipelined, the triggers through the
outbox in that same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tomstream.outbox import enqueue


@dataclass(frozen=True)
class CadenceRow:
    cadence_id: int
    group_id: int
    template_id: int | None
    strategy: str
    facility: str
    observation_type: str
    target: dict[str, Any]
    parameters: dict[str, Any]
    frequency_hours: float
    anchor: str
    options: dict[str, Any]
    stop_conditions: dict[str, Any]
    state: str
    state_reason: str | None
    last_decision: str | None = None
    last_decision_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ObservationRow:
    request_id: str
    group_id: int
    cadence_id: int
    step: int
    follows: str | None
    reason: str
    facility: str
    observation_type: str
    parameters: dict[str, Any]
    requested_start: datetime
    requested_end: datetime
    observation_id: str | None = None
    status: str | None = None
    reported_status: str | None = None
    status_time: datetime | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    user_cancel: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class HistoryRow:
    cadence_id: int
    source: str
    outcome: str
    detail: str
    request_id: str | None = None
    event: dict[str, Any] | None = None
    emitted: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutgoingTrigger:
    request_id: str
    payload: bytes


@dataclass
class Writes:
    """Everything one transaction of decisions writes."""

    updated: dict[str, ObservationRow] = field(default_factory=dict)
    inserted: list[ObservationRow] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    cadences: dict[int, CadenceRow] = field(default_factory=dict)
    triggers: list[OutgoingTrigger] = field(default_factory=list)


_CADENCE_COLUMNS = [f.name for f in fields(CadenceRow)]
_OBSERVATION_COLUMNS = [f.name for f in fields(ObservationRow)]
_HISTORY_COLUMNS = [f.name for f in fields(HistoryRow)]
_OBSERVATION_INSERT = [c for c in _OBSERVATION_COLUMNS if c != "created_at"]
# Columns a decision updates, with their types (for the arrays of _update_many).
_OBSERVATION_UPDATE = {
    "observation_id": "text",
    "status": "text",
    "reported_status": "text",
    "status_time": "timestamptz",
    "scheduled_start": "timestamptz",
    "scheduled_end": "timestamptz",
    "user_cancel": "boolean",
}
_CADENCE_UPDATE = {
    "state": "text",
    "state_reason": "text",
    "last_decision": "text",
    "last_decision_at": "timestamptz",
}
_JSON = {"target", "parameters", "options", "stop_conditions", "event"}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, tuple):  # psycopg sends a tuple as a record, a list as an array
        return list(value)
    return Jsonb(value) if name in _JSON and value is not None else value


def _select(columns: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + column for column in columns)


# ---------------------------------------------------------------------------------- reading


def lock_cadences(conn: psycopg.Connection, cadence_ids: Iterable[int]) -> dict[int, CadenceRow]:
    """Lock and read cadences, in id order (the one order every writer uses)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {_select(_CADENCE_COLUMNS)} FROM dynamic_cadence "
            "WHERE cadence_id = ANY(%s) ORDER BY cadence_id FOR UPDATE",
            (sorted(set(cadence_ids)),),
        ).fetchall()
    return {row["cadence_id"]: CadenceRow(**row) for row in rows}


def cadence(conn: psycopg.Connection, cadence_id: int) -> CadenceRow | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"SELECT {_select(_CADENCE_COLUMNS)} FROM dynamic_cadence WHERE cadence_id = %s",
            (cadence_id,),
        ).fetchone()
    return CadenceRow(**row) if row else None


def cadences(conn: psycopg.Connection, limit: int, offset: int) -> list[CadenceRow]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {_select(_CADENCE_COLUMNS)} FROM dynamic_cadence "
            "ORDER BY cadence_id LIMIT %s OFFSET %s",
            (limit, offset),
        ).fetchall()
    return [CadenceRow(**row) for row in rows]


def observations_of(
    conn: psycopg.Connection, cadence_ids: Iterable[int], *, for_decisions: bool = False
) -> dict[int, list[ObservationRow]]:
    """Each cadence's observations, in step order.

    ``for_decisions``: the parameters of observations already followed up are left empty, as
    no new request can follow them; that saves reading and parsing them for every event.
    """
    found: dict[int, list[ObservationRow]] = {cadence_id: [] for cadence_id in cadence_ids}
    columns = _select(_OBSERVATION_COLUMNS, "o")
    if for_decisions:
        columns = columns.replace(
            "o.parameters",
            "CASE WHEN EXISTS (SELECT 1 FROM observation_record f "
            "WHERE f.follows = o.request_id) THEN '{}'::jsonb ELSE o.parameters END AS parameters",
        )
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {columns} FROM observation_record o "
            "WHERE o.cadence_id = ANY(%s) ORDER BY o.cadence_id, o.step",
            (list(found),),
        ).fetchall()
    for row in rows:
        found[row["cadence_id"]].append(ObservationRow(**row))
    return found


def cadence_ids_of_requests(conn: psycopg.Connection, request_ids: Iterable[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT request_id, cadence_id FROM observation_record WHERE request_id = ANY(%s)",
        (list(set(request_ids)),),
    ).fetchall()
    return dict(rows)


def observation(conn: psycopg.Connection, request_id: str) -> ObservationRow | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"SELECT {_select(_OBSERVATION_COLUMNS)} FROM observation_record WHERE request_id = %s",
            (request_id,),
        ).fetchone()
    return ObservationRow(**row) if row else None


def history(conn: psycopg.Connection, cadence_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT decision_id, decided_at, source, request_id, event, outcome, detail, emitted "
            "FROM cadence_decision WHERE cadence_id = %s ORDER BY decision_id",
            (cadence_id,),
        ).fetchall()


def sweep_candidates(conn: psycopg.Connection, terminal_statuses: Sequence[str]) -> list[int]:
    """Active cadences whose latest observation is terminal and not followed up, or whose
    end_time has passed: the ones a lost event may have left waiting."""
    rows = conn.execute(
        """
        SELECT c.cadence_id
        FROM dynamic_cadence c
        JOIN LATERAL (
            SELECT o.request_id, o.status FROM observation_record o
            WHERE o.cadence_id = c.cadence_id ORDER BY o.step DESC LIMIT 1
        ) latest ON true
        WHERE c.active AND (
            (latest.status = ANY(%s) AND NOT EXISTS (
                SELECT 1 FROM observation_record f WHERE f.follows = latest.request_id))
            OR (c.stop_conditions ? 'end_time'
                AND (c.stop_conditions->>'end_time')::timestamptz <= now()))
        ORDER BY c.cadence_id
        """,
        (list(terminal_statuses),),
    ).fetchall()
    return [row[0] for row in rows]


# ---------------------------------------------------------------------------------- writing


def new_group(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(
        "INSERT INTO observation_group (name) VALUES (%s) RETURNING group_id", (name,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def insert_cadence(conn: psycopg.Connection, values: dict[str, Any]) -> CadenceRow:
    """Insert a cadence from column values (no id, state or decision yet); return it."""
    columns = list(values)
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"INSERT INTO dynamic_cadence ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"RETURNING {_select(_CADENCE_COLUMNS)}",
            [_value(column, values[column]) for column in columns],
        ).fetchone()
    assert row is not None
    return CadenceRow(**row)


def write(conn: psycopg.Connection, writes: Writes) -> None:
    """Apply a batch of decisions; the triggers go to the outbox in the same transaction.

    A new observation is a plain INSERT: if a logic error ever tried a second follow-up of the
    same observation, the unique constraints fail the whole transaction rather than emit twice.
    """
    with conn.pipeline(), conn.cursor() as cursor:
        if writes.updated:
            key = ("request_id", "text")
            _update_many(cursor, "observation_record", key, _OBSERVATION_UPDATE, writes.updated)
        if writes.inserted:
            _insert_many(cursor, "observation_record", _OBSERVATION_INSERT, writes.inserted)
        if writes.cadences:
            key = ("cadence_id", "bigint")
            _update_many(cursor, "dynamic_cadence", key, _CADENCE_UPDATE, writes.cadences)
        if writes.history:
            _insert_many(cursor, "cadence_decision", _HISTORY_COLUMNS, writes.history)
        for trigger in writes.triggers:
            enqueue(conn, "cadence-triggers", trigger.payload, key=trigger.request_id)


def _update_many(
    cursor: psycopg.Cursor[Any],
    table: str,
    key: tuple[str, str],
    columns: dict[str, str],
    rows: Mapping[Any, Any],
) -> None:
    """One UPDATE for many rows (dataclasses, by their key): the values travel as one array per
    column and ``unnest`` pairs them up, so PostgreSQL runs one statement, not one per row."""
    names = [key[0], *columns]
    arrays = ", ".join(f"%s::{kind}[]" for kind in [key[1], *columns.values()])
    assignments = ", ".join(f"{name} = v.{name}" for name in columns)
    cursor.execute(
        f"UPDATE {table} t SET {assignments}, updated_at = now() "
        f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE t.{key[0]} = v.{key[0]}",
        [[getattr(row, name) for row in rows.values()] for name in names],
    )


def _insert_many(
    cursor: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Sequence[Any]
) -> None:
    """Insert dataclass rows (pipelined; JSON columns as jsonb, tuples as arrays)."""
    cursor.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
        [[_value(name, getattr(row, name)) for name in columns] for row in rows],
    )


# -------------------------------------------------------------------------------- templates


def insert_template(
    conn: psycopg.Connection, name: str, facility: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "INSERT INTO observation_template (name, facility, parameters) VALUES (%s, %s, %s) "
            "RETURNING template_id, name, facility, parameters, created_at",
            (name, facility, Jsonb(parameters)),
        ).fetchone()
    assert row is not None
    return row


def templates(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT template_id, name, facility, parameters, created_at "
            "FROM observation_template ORDER BY template_id"
        ).fetchall()


def template(conn: psycopg.Connection, template_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT template_id, name, facility, parameters, created_at "
            "FROM observation_template WHERE template_id = %s",
            (template_id,),
        ).fetchone()


def delete_template(conn: psycopg.Connection, template_id: int) -> bool:
    deleted = conn.execute(
        "DELETE FROM observation_template WHERE template_id = %s", (template_id,)
    ).rowcount
    return deleted > 0


def diaobject_position(conn: psycopg.Connection, diaobject_id: int) -> tuple[float, float] | None:
    row = conn.execute(
        "SELECT ra, decl FROM diaobject WHERE diaobject_id = %s", (diaobject_id,)
    ).fetchone()
    return (float(row[0]), float(row[1])) if row else None

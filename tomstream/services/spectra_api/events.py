"""Spectrum events: every change to wanted, planned or reported spectra is announced on the
``spectrum-events`` topic (Avro ``tomstream.spectrum.event``, key = object id), written to the
outbox in the transaction that makes the change, so an event exists exactly when its change
committed (``tomstream.outbox``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg

from tomstream import avro
from tomstream.outbox import enqueue

TOPIC = "spectrum-events"
SCHEMA = "tomstream.spectrum.event"


class EventType(StrEnum):
    WANTED = "WANTED"
    PLANNED = "PLANNED"
    PLAN_REMOVED = "PLAN_REMOVED"
    REPORTED = "REPORTED"


def emit(
    conn: psycopg.Connection,
    event_type: EventType,
    object_id: int,
    user: str,
    **fields: Any,
) -> None:
    """Enqueue one event inside the caller's transaction (fields: the schema's optional ones)."""
    record = {
        "eventId": str(uuid.uuid4()),
        "eventType": event_type.value,
        "eventTime": datetime.now(UTC),
        "diaObjectId": object_id,
        "user": user,
        **fields,
    }
    enqueue(conn, TOPIC, avro.encode(SCHEMA, record, strict=True), key=str(object_id))

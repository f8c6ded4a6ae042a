"""Where ingest writes: PostgreSQL rows and MongoDB raw alerts, in bulk and idempotently."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from bson import Binary
from psycopg.types.json import Jsonb
from pymongo import ASCENDING
from pymongo.database import Database

from tomstream.services.ingest.alerts import FORCED_COLUMNS, SOURCE_COLUMNS, AlertRows, ObjectRow
from tomstream.storage.beside import Beside
from tomstream.storage.mongo import insert_new
from tomstream.storage.postgres import Postgres, copy_insert

RAW_ALERTS = "alerts"
RAW_ALERT_COPIES = "alert_copies"

_OBJECT_COLUMNS = (
    "diaobject_id", "schema_name", "ra", "decl", "redshift", "redshift_err", "properties",
    "alert_mjd",
)  # fmt: skip
_OBJECT_UPSERT = (
    "ON CONFLICT (diaobject_id) DO UPDATE SET schema_name = EXCLUDED.schema_name, "
    "ra = EXCLUDED.ra, decl = EXCLUDED.decl, redshift = EXCLUDED.redshift, "
    "redshift_err = EXCLUDED.redshift_err, properties = EXCLUDED.properties, "
    "alert_mjd = EXCLUDED.alert_mjd, updated_at = now() "
    # An older alert delivered late never overwrites the values of a newer one.
    "WHERE diaobject.alert_mjd <= EXCLUDED.alert_mjd"
)
_RECEIPT_COLUMNS = (
    "alert_id", "topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at",
    "diaobject_id", "diasource_id", "alert_mjd",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Receipt:
    rows: AlertRows
    topic: str
    partition: int
    offset: int
    kafka_timestamp: datetime | None
    ingested_at: datetime
    payload: bytes


class KnownIds:
    """Ids already stored, remembered (up to a bound) so history rows are not re-sent.

    Every alert repeats its object's earlier detections and forced photometry; without this,
    each batch would COPY the same history rows again only for ON CONFLICT to drop them. An id
    enters only after its transaction committed, so forgetting one (eviction, restart) costs a
    redundant row, never a missing one.
    """

    def __init__(self, capacity: int = 2_000_000) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, row_id: int) -> bool:
        return row_id in self._ids

    def add_all(self, row_ids: Iterable[int]) -> None:
        for row_id in row_ids:
            self._ids[row_id] = None
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class IngestStore:
    def __init__(self, postgres: Postgres, database: Database[dict[str, Any]]) -> None:
        self._postgres = postgres
        self._raw = database[RAW_ALERTS]
        self._copies = database[RAW_ALERT_COPIES]
        self._known_sources = KnownIds()
        self._known_forced = KnownIds()
        self._beside = Beside("ingest-mongo")
        self._raw.create_index([("diaObjectId", ASCENDING)])
        self._copies.create_index([("alertId", ASCENDING)])

    def write(self, receipts: Sequence[Receipt]) -> None:
        """Both stores at once; each write is idempotent, so a retry is safe."""
        objects: dict[int, ObjectRow] = {}
        sources: dict[int, tuple[Any, ...]] = {}
        forced: dict[int, tuple[Any, ...]] = {}
        for receipt in receipts:
            rows = receipt.rows
            if rows.obj is not None:
                held = objects.get(rows.obj.diaobject_id)
                if held is None or held.alert_mjd <= rows.obj.alert_mjd:
                    objects[rows.obj.diaobject_id] = rows.obj
            for source in rows.sources:
                if source[0] not in self._known_sources:
                    sources[source[0]] = source
            for point in rows.forced:
                if point[0] not in self._known_forced:
                    forced[point[0]] = point
        with self._beside.running(self._write_raw, receipts), self._postgres.transaction() as conn:
            copy_insert(
                conn,
                "diaobject",
                _OBJECT_COLUMNS,
                map(_object_row, objects.values()),
                on_conflict=_OBJECT_UPSERT,
            )
            # Nothing to COPY when every history row is known already (a replayed batch).
            if sources:
                copy_insert(conn, "diasource", SOURCE_COLUMNS, sources.values())
            if forced:
                copy_insert(conn, "diaforcedsource", FORCED_COLUMNS, forced.values())
            copy_insert(conn, "alert_receipt", _RECEIPT_COLUMNS, map(_receipt_row, receipts))
        self._known_sources.add_all(sources)
        self._known_forced.add_all(forced)

    def close(self) -> None:
        self._beside.close()

    def _write_raw(self, receipts: Sequence[Receipt]) -> None:
        """One document per alert id (its first copy); other topics' copies kept beside it.

        A DDF alert arrives on two topics with different histories: both payloads are kept,
        exactly, while ``alerts`` stays one document per alert.
        """
        firsts: dict[int, dict[str, Any]] = {}
        others: list[dict[str, Any]] = []
        for receipt in receipts:
            document = _raw_document(receipt)
            held = firsts.setdefault(document["_id"], document)
            if held is not document and held["topic"] != document["topic"]:
                others.append(document)
        # An alert already stored may be a replay (same topic) or its other DDF topic: both
        # go to the copies, insert-only. Asking which would cost a collection scan on
        # FerretDB (it does not narrow integer `_id` lookups); a replay's extra copy is stored
        # once and never again.
        others += insert_new(self._raw, list(firsts.values()))
        copies = [{**d, "_id": f"{d['_id']}:{d['topic']}", "alertId": d["_id"]} for d in others]
        insert_new(self._copies, copies)


def _object_row(o: ObjectRow) -> tuple[Any, ...]:
    # orjson: the standard library's json took ~39 µs per diaObject, orjson ~2 µs.
    return (
        o.diaobject_id, o.schema_name, o.ra, o.decl, o.redshift, o.redshift_err,
        Jsonb(o.properties, dumps=orjson.dumps), o.alert_mjd,
    )  # fmt: skip


def _receipt_row(r: Receipt) -> tuple[Any, ...]:
    return (
        r.rows.alert_id, r.topic, r.partition, r.offset, r.kafka_timestamp, r.ingested_at,
        r.rows.diaobject_id, r.rows.diasource_id, r.rows.mjd,
    )  # fmt: skip


def _raw_document(receipt: Receipt) -> dict[str, Any]:
    rows = receipt.rows
    return {
        "_id": rows.alert_id,
        "schema": rows.schema_name,
        "diaObjectId": rows.diaobject_id,
        "diaSourceId": rows.diasource_id,
        "mjd": rows.mjd,
        "topic": receipt.topic,
        "partition": receipt.partition,
        "offset": receipt.offset,
        "payload": Binary(receipt.payload),
    }

"""What broker_poll and ingest store that the API shows as is: classifiers and raw alerts."""

from __future__ import annotations

from typing import Any

import psycopg
from pymongo.database import Database

from tomstream.services.ingest.storage import RAW_ALERTS


def classifiers(conn: psycopg.Connection) -> list[tuple[int, str, str, str, str]]:
    """(id, broker name, broker version, classifier name, classifier params), by id."""
    return conn.execute(
        "SELECT classifier_id, broker_name, broker_version, classifier_name, classifier_params "
        "FROM classifier ORDER BY classifier_id"
    ).fetchall()


def alert_id_of_source(conn: psycopg.Connection, diasource_id: int) -> int | None:
    """The alert a diaSource triggered (its receipt), if tomstream received one."""
    row = conn.execute(
        "SELECT alert_id FROM alert_receipt WHERE diasource_id = %s ORDER BY alert_id LIMIT 1",
        (diasource_id,),
    ).fetchone()
    return row[0] if row else None


def raw_alert(mongo: Database[dict[str, Any]], alert_id: int) -> bytes | None:
    """The exact bytes of the alert as it first arrived (ingest keeps one document per alert)."""
    document = mongo[RAW_ALERTS].find_one({"_id": alert_id}, {"payload": 1})
    return bytes(document["payload"]) if document and document.get("payload") else None

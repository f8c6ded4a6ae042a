"""``classids``, ``classifiers_json`` and ``getalert``: documents the DESC TOM served as they
are (keyed dicts and the Avro-shaped alert, without a ``status`` key)."""

from __future__ import annotations

from typing import Any

import psycopg
from pymongo.database import Database

from tomstream import avro
from tomstream.services.spectra_api.errors import not_found
from tomstream.services.spectra_api.models import GetAlertRequest
from tomstream.services.spectra_api.storage import catalog


def classifiers(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    return {
        str(classifier_id): {
            "brokername": broker,
            "brokerversion": version,
            "classifiername": name,
            "classifierparams": params,
        }
        for classifier_id, broker, version, name, params in catalog.classifiers(conn)
    }


def alert(
    conn: psycopg.Connection, mongo: Database[dict[str, Any]], request: GetAlertRequest
) -> dict[str, Any]:
    """The alert exactly as it arrived, decoded with the schema it was written in."""
    if request.alertid is not None:
        alert_id: int | None = request.alertid
        what = f"alertid {request.alertid}"
    else:
        alert_id = catalog.alert_id_of_source(conn, request.sourceid or 0)
        what = f"sourceid {request.sourceid}"
    payload = catalog.raw_alert(mongo, alert_id) if alert_id is not None else None
    if payload is None:
        raise not_found(f"unknown {what}")
    return avro.decode_alert(payload).record

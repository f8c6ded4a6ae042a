"""MongoDB access: the database from the settings, and idempotent inserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from tomstream.config import Settings

DUPLICATE_KEY = 11000


def mongo_database(settings: Settings) -> Database[dict[str, Any]]:
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
    )
    return client[settings.mongodb_database]


def insert_new(
    collection: Collection[dict[str, Any]], documents: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert documents keyed by ``_id``; ones already there are left as they are.

    Returns the documents that were not inserted because their ``_id`` existed. Insert-only on
    purpose: unordered ``insert_many`` is fast on every MongoDB-wire server, while bulk upserts
    are two orders of magnitude slower on FerretDB.
    """
    if not documents:
        return []
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        details = error.details
        errors = details.get("writeErrors", [])
        if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return [documents[e["index"]] for e in errors]
    return []

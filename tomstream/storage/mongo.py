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


def insert_new(collection: Collection[dict[str, Any]], documents: Sequence[dict[str, Any]]) -> int:
    """Insert documents keyed by ``_id``; ones already there are left as they are.

    Returns how many were new. Unordered, so one duplicate does not stop the rest.
    """
    if not documents:
        return 0
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as error:
        details = error.details
        others = [e for e in details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if others or details.get("writeConcernErrors"):
            raise
        return int(details.get("nInserted", 0))

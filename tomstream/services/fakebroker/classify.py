"""The fake broker's two classifiers, as DESC's test broker defines them.

``RandomSNType`` is random, but seeded by the alert id: classifying the same alert again (a
replay, or a restart before the commit) gives the same message content, which broker_poll
then stores once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

BROKER_NAME = "FakeBroker"
BROKER_VERSION = "v1.0"

# The 19 SN-like and recurring classes RandomSNType spreads probability over; 2242 gets the rest.
RANDOM_CLASSES = (
    2222, 2223, 2224, 2225, 2226,
    2232, 2233, 2234, 2235,
    2243, 2244, 2245, 2246,
    2322, 2323, 2324, 2325, 2326,
    2332,
)  # fmt: skip
REST_CLASS = 2242


@dataclass(frozen=True)
class Classifier:
    name: str
    params: str


NUGENT = Classifier("NugentClassifier", "100%")
RANDOM_SN_TYPE = Classifier("RandomSNType", "Perfect")


def nugent(_alert_id: int) -> list[tuple[int, float]]:
    return [(2222, 1.0)]


def random_sn_type(alert_id: int) -> list[tuple[int, float]]:
    """19 shuffled classes, each a random share of what is left; 2242 takes the remainder."""
    rng = random.Random(alert_id)
    classes = list(RANDOM_CLASSES)
    rng.shuffle(classes)
    remaining = 1.0
    pairs = []
    for class_id in classes:
        share = rng.random() * remaining
        remaining -= share
        pairs.append((class_id, share))
    pairs.append((REST_CLASS, remaining))
    return pairs


CLASSIFIERS = ((NUGENT, nugent), (RANDOM_SN_TYPE, random_sn_type))


def classification_messages(
    alert_id: int, diasource_id: int, published: datetime, ingested: datetime
) -> list[dict[str, Any]]:
    """The brokerClassification records (v0_9_1) the fake broker sends for one alert."""
    return [
        {
            "alertId": alert_id,
            "diaSourceId": diasource_id,
            "elasticcPublishTimestamp": published,
            "brokerIngestTimestamp": ingested,
            "brokerName": BROKER_NAME,
            "brokerVersion": BROKER_VERSION,
            "classifierName": classifier.name,
            "classifierParams": classifier.params,
            "classifications": [
                {"classId": class_id, "probability": probability}
                for class_id, probability in classify(alert_id)
            ],
        }
        for classifier, classify in CLASSIFIERS
    ]

"""The ELAsTiCC2 class-id taxonomy, shipped with the package (``data/``).

``elasticc2_taxonomy.json`` is the taxonomy itself (42 class ids with names and parents);
``elasticc2_gentype_classid_map.csv`` is the DESC TOM's map of SNANA gentypes to the class ids
they count as, with the four matching levels. Both are copies of the project's reference files:
the product reads them from its own package, never from the reference folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

_DATA = resources.files("tomstream.services.spectra_api") / "data"
_MATCH_LEVELS = ("exactmatch", "categorymatch", "broadmatch", "generalmatch")


@dataclass(frozen=True)
class TaxonomyClass:
    class_id: int
    name: str
    parent: int | None
    exact_gentypes: tuple[int, ...]
    # Filled from the gentype map: the gentypes that count as this class at any level, and
    # at which levels (exact, category, broad, general) they do.
    gentypes: tuple[int, ...] = ()
    matches: dict[str, bool] = field(default_factory=dict)


@cache
def classes() -> dict[int, TaxonomyClass]:
    """Every class id of the taxonomy, in ascending order."""
    flat = json.loads((_DATA / "elasticc2_taxonomy.json").read_text())["flat"]
    gentypes: dict[int, list[int]] = {}
    levels: dict[int, dict[str, bool]] = {}
    rows = csv.DictReader(io.StringIO((_DATA / "elasticc2_gentype_classid_map.csv").read_text()))
    for row in rows:
        class_id = int(row["classId"])
        gentypes.setdefault(class_id, []).append(int(row["gentype"]))
        # A class matches at a level for every gentype it is mapped from, or for none.
        levels[class_id] = {level: row[level] == "1" for level in _MATCH_LEVELS}
    found = {}
    for entry in sorted(flat, key=lambda e: e["classId"]):
        class_id = entry["classId"]
        found[class_id] = TaxonomyClass(
            class_id=class_id,
            name=entry["name"],
            parent=entry["parentClassId"],
            exact_gentypes=tuple(entry["exactGentypes"]),
            gentypes=tuple(sorted(gentypes.get(class_id, ()))),
            matches=levels.get(class_id, dict.fromkeys(_MATCH_LEVELS, False)),
        )
    return found


def is_known(class_id: int) -> bool:
    return class_id in classes()


def classids_document() -> dict[str, dict[str, Any]]:
    """``elasticc2/classids``: the DESC TOM's document, keyed by class id.

    Each entry has the DESC keys: the four match flags, ``description`` and ``gentype`` (the
    SNANA gentypes that count as this class); classes no gentype maps to have every flag false
    and no gentypes, as in the DESC TOM.
    """
    return {
        str(c.class_id): {**c.matches, "description": c.name, "gentype": list(c.gentypes)}
        for c in classes().values()
    }

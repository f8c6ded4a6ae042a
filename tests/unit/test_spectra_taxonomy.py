"""The ELAsTiCC2 taxonomy the spectra API ships (tomstream/services/spectra_api/data)."""

from __future__ import annotations

import csv
import io
from importlib import resources

from tomstream.services.spectra_api import taxonomy


def test_the_package_carries_the_42_classes() -> None:
    classes = taxonomy.classes()
    assert len(classes) == 42
    assert list(classes) == sorted(classes)
    assert classes[2222].name == "Ia"
    assert classes[2222].parent == 2220
    assert taxonomy.is_known(300)  # NotClassified: what a facility reports for "no idea"
    assert not taxonomy.is_known(111)  # an ELAsTiCC1 id


def test_classids_document_has_the_desc_shape() -> None:
    document = taxonomy.classids_document()
    assert set(document) == {str(c) for c in taxonomy.classes()}
    assert list(document["2222"]) == [
        "exactmatch", "categorymatch", "broadmatch", "generalmatch", "description", "gentype",
    ]  # fmt: skip
    assert document["2222"] == {
        "exactmatch": True,
        "categorymatch": True,
        "broadmatch": True,
        "generalmatch": True,
        "description": "Ia",
        "gentype": [10],
    }
    sn_like = document["2220"]
    assert (sn_like["exactmatch"], sn_like["categorymatch"]) == (False, True)
    assert {10, 11, 12, 20, 30} <= set(sn_like["gentype"])
    assert document["0"] == {
        "exactmatch": False,
        "categorymatch": False,
        "broadmatch": False,
        "generalmatch": False,
        "description": "Meta",
        "gentype": [],
    }


def test_match_levels_are_the_same_for_every_gentype_of_a_class() -> None:
    # classids_document reports one set of flags per class: the map must not disagree.
    text = (
        resources.files("tomstream.services.spectra_api")
        / "data"
        / "elasticc2_gentype_classid_map.csv"
    )
    levels: dict[str, set[tuple[str, ...]]] = {}
    for row in csv.DictReader(io.StringIO(text.read_text())):
        flags = (row["exactmatch"], row["categorymatch"], row["broadmatch"], row["generalmatch"])
        levels.setdefault(row["classId"], set()).add(flags)
    assert levels
    assert all(len(flags) == 1 for flags in levels.values())
    assert all(taxonomy.is_known(int(class_id)) for class_id in levels)

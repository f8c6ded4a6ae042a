"""The project's Avro schemas are wire-identical to the official reference copies."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import fastavro.schema
import pytest
from conftest import missing_reference

from tomstream import avro
from tomstream.schemas import SCHEMA_DIR

REFERENCE_AVRO = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "avro"

_ELASTICC2 = ("alert", "diaSource", "diaForcedSource", "diaObject", "brokerClassification")
_ELASTICC1 = (*_ELASTICC2, "diaNondetectionLimit")
_RUBIN = ("alert", "diaSource", "diaForcedSource", "diaObject", "ssSource", "mpc_orbits")

# Every schema file the project must ship, by its path under tomstream/schemas/avro (which is also
# its path under the reference folder).
EXPECTED = sorted(
    [f"elasticc.v0_9_1.{name}.avsc" for name in _ELASTICC2]
    + [f"elasticc.v0_9.{name}.avsc" for name in _ELASTICC1]
    + [f"lsst/{v}/lsst.{v}.{name}.avsc" for v in ("v10_0", "v11_0") for name in _RUBIN]
)


def _reference(rel: str) -> Path:
    if not REFERENCE_AVRO.is_dir():
        missing_reference(f"reference schemas not found at {REFERENCE_AVRO}")
    path = REFERENCE_AVRO / rel
    assert path.is_file(), f"no reference schema {rel}"
    return path


def _project(rel: str) -> Path:
    path = SCHEMA_DIR / rel
    assert path.is_file(), f"project schema {rel} is missing from {SCHEMA_DIR}"
    return path


def _canonical(path: Path) -> str:
    # load_schema resolves the named types from <full name>.avsc files in the same directory,
    # so the canonical form of an alert covers all the records it references.
    return fastavro.schema.to_parsing_canonical_form(fastavro.schema.load_schema(str(path)))


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_docs(value) for key, value in node.items() if key != "doc"}
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


@pytest.mark.parametrize("rel", EXPECTED)
def test_project_schema_present(rel: str) -> None:
    _project(rel)


@pytest.mark.parametrize("rel", EXPECTED)
def test_canonical_form_matches_reference(rel: str) -> None:
    assert _canonical(_project(rel)) == _canonical(_reference(rel))


@pytest.mark.parametrize("rel", EXPECTED)
def test_defaults_and_attributes_match_reference(rel: str) -> None:
    # The canonical form drops defaults, logical types and custom attributes; defaults matter
    # for schema resolution, so compare everything but the docs as well.
    ours = json.loads(_project(rel).read_text())
    theirs = json.loads(_reference(rel).read_text())
    assert _without_docs(ours) == _without_docs(theirs)


def _shipped() -> list[str]:
    return sorted(p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*.avsc"))


def test_other_schema_files_are_project_owned() -> None:
    # A file without an external counterpart must be one of the project's own message schemas,
    # which live in the tomstream namespace (a stray copy of an external schema would otherwise
    # escape the conformance checks above).
    for rel in sorted(set(_shipped()) - set(EXPECTED)):
        schema = json.loads((SCHEMA_DIR / rel).read_text())
        assert schema.get("namespace", "").startswith("tomstream."), rel


# The loader names of the broker messages keep the original file names, which do not match the
# misspelled record name inside (see the README).
_FILE_NAME_EXCEPTIONS = {
    "elasticc.v0_9.brokerClassification.avsc": "elasticc.v0_9.brokerClassfication",
    "elasticc.v0_9_1.brokerClassification.avsc": "elasticc.v0_9_1.brokerClassfication",
}


@pytest.mark.parametrize("rel", _shipped())
def test_file_named_after_its_type(rel: str) -> None:
    # Named-type resolution finds a type by file name, so the name must be the type's full name.
    schema = json.loads((SCHEMA_DIR / rel).read_text())
    full_name = f"{schema['namespace']}.{schema['name']}"
    name = Path(rel).name
    assert full_name == _FILE_NAME_EXCEPTIONS.get(name, name.removesuffix(".avsc"))


@pytest.mark.parametrize(
    ("name", "record_name"),
    [
        (avro.BROKER_CLASSIFICATION, "elasticc.v0_9_1.brokerClassfication"),
        (avro.BROKER_CLASSIFICATION_V09, "elasticc.v0_9.brokerClassfication"),
    ],
)
def test_broker_record_name_keeps_original_typo(name: str, record_name: str) -> None:
    assert avro.load_schema(name)["name"] == record_name
    assert json.loads(avro.schema_path(name).read_text())["name"] == "brokerClassfication"


@pytest.mark.parametrize(
    "name",
    [
        avro.ELASTICC_ALERT,
        avro.ELASTICC_V09_ALERT,
        avro.BROKER_CLASSIFICATION,
        avro.BROKER_CLASSIFICATION_V09,
        avro.LSST_V10_ALERT,
        avro.LSST_V11_ALERT,
    ],
)
def test_named_constants_load(name: str) -> None:
    schema = avro.load_schema(name)
    assert schema["type"] == "record"
    assert avro.load_schema(name) is schema  # cached
    assert name in avro.available_schemas()


def test_alert_record_names() -> None:
    assert avro.load_schema(avro.ELASTICC_ALERT)["name"] == "elasticc.v0_9_1.alert"
    assert avro.load_schema(avro.LSST_V10_ALERT)["name"] == "lsst.v10_0.alert"
    assert avro.load_schema(avro.LSST_V11_ALERT)["name"] == "lsst.v11_0.alert"


def test_rubin_registry_covers_every_shipped_version() -> None:
    shipped: dict[int, str] = {}
    for path in SCHEMA_DIR.glob("lsst/*/lsst.v*.alert.avsc"):
        match = re.fullmatch(r"lsst\.v(\d+)_(\d+)\.alert", path.stem)
        assert match, path
        shipped[avro.schema_id_for(int(match[1]), int(match[2]))] = path.stem
    assert dict(avro.RUBIN_SCHEMA_IDS) == shipped
    assert avro.RUBIN_SCHEMA_IDS == {1000: avro.LSST_V10_ALERT, 1100: avro.LSST_V11_ALERT}


@pytest.mark.parametrize("name", ["elasticc.v0_9_1.nope", "lsst.v99_0.alert", "../x", "a*", ""])
def test_unknown_schema_name(name: str) -> None:
    with pytest.raises(avro.SchemaNotFoundError):
        avro.schema_path(name)
    with pytest.raises(avro.SchemaNotFoundError):
        avro.load_schema(name)

"""tomstream.avro on real ELAsTiCC and Rubin data, on built records, and on garbage."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import pytest
from conftest import missing_reference

from tomstream import avro

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SAMPLES = SHARED / "reference" / "samples"
RUBIN = SHARED / "reference" / "avro" / "lsst"
ELASTICC1_GZ = (
    SAMPLES / "elasticc1_v0_9" / "alert_mjd60563.1120_obj104044681_src208089362038.avro.gz"
)
ELASTICC1_CONTAINER = SAMPLES / "elasticc1_v0_9" / "11290844.avro"

RUBIN_VERSIONS = [
    pytest.param("v10_0", 1000, avro.LSST_V10_ALERT, id="v10_0"),
    pytest.param("v11_0", 1100, avro.LSST_V11_ALERT, id="v11_0"),
]


def _shared_file(path: Path) -> Path:
    if not path.is_file():
        missing_reference(f"reference data not found: {path}")
    return path


def _read_container(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with _shared_file(path).open("rb") as f:
        reader = fastavro.reader(f)
        return list(reader), reader.writer_schema


def _rubin_fake_alert(version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    records, writer_schema = _read_container(RUBIN / version / "fakeAlert.avro")
    assert len(records) == 1
    return records[0], writer_schema


def _canonical(schema: Any) -> str:
    return fastavro.schema.to_parsing_canonical_form(schema)


# ------------------------------------------------------------------------ built test records


def _dia_source(source_id: int, object_id: int, mjd: float, band: str) -> dict[str, Any]:
    # Float fields are float32 on the wire: use values that float32 holds exactly.
    return {
        "diaSourceId": source_id,
        "diaObjectId": object_id,
        "midPointTai": mjd,
        "filterName": band,
        "ra": 52.123456789012,
        "decl": -27.987654321098,
        "psFlux": 1234.5,
        "psFluxErr": 61.25,
        "snr": 20.15625,
    }


def _dia_forced_source(source_id: int, object_id: int, mjd: float, band: str) -> dict[str, Any]:
    return {
        "diaForcedSourceId": source_id,
        "diaObjectId": object_id,
        "midPointTai": mjd,
        "filterName": band,
        "psFlux": -56.75,
        "psFluxErr": 158.125,
    }


def _dia_object(object_id: int) -> dict[str, Any]:
    schema = avro.load_schema("elasticc.v0_9_1.diaObject")
    record: dict[str, Any] = {field["name"]: None for field in schema["fields"]}
    record.update(
        diaObjectId=object_id,
        simVersion="ELASTICC2_TEST",
        ra=52.1234567,
        decl=-27.9876543,
        mwebv=0.0234375,
        mwebv_err=0.001953125,
        z_final=0.25,
        z_final_err=0.015625,
        hostgal_zphot=0.265625,
        hostgal_zphot_q050=0.2578125,
        hostgal_mag_r=21.5,
        hostgal_magerr_r=0.0625,
        hostgal_snsep=1.75,
    )
    return record


def _elasticc2_alert(alert_id: int = 1_000_245_000_123) -> dict[str, Any]:
    # As in ELAsTiCC, alertId is the id of the triggering diaSource.
    object_id = 1_000_245
    first_id = 1_000_245_000_080
    return {
        "alertId": alert_id,
        "diaSource": _dia_source(alert_id, object_id, 60580.0625, "r"),
        "prvDiaSources": [
            _dia_source(first_id + 20, object_id, 60570.125, "g"),
            _dia_source(first_id + 30, object_id, 60575.25, "i"),
        ],
        "prvDiaForcedSources": [
            _dia_forced_source(first_id + n, object_id, 60550.0 + n, "ugrizY"[n % 6])
            for n in range(12)
        ],
        "diaObject": _dia_object(object_id),
    }


def _broker_message(**changes: Any) -> dict[str, Any]:
    message = {
        "alertId": 1_000_245_000_123,
        "diaSourceId": 1_000_245_000_123,
        "elasticcPublishTimestamp": datetime(2023, 11, 15, 3, 4, 5, 678000, tzinfo=UTC),
        "brokerIngestTimestamp": datetime(2023, 11, 15, 3, 4, 6, 12000, tzinfo=UTC),
        "brokerName": "FakeBroker",
        "brokerVersion": "1.2.3",
        "classifierName": "RandomSNType v0.1",
        "classifierParams": "seed=42",
        "classifications": [
            {"classId": 2222, "probability": 0.75},
            {"classId": 2223, "probability": 0.125},
            {"classId": 2232, "probability": 0.125},
        ],
    }
    message.update(changes)
    return message


# ---------------------------------------------------------------------------- ELAsTiCC1 data


def test_elasticc1_gzip_sample() -> None:
    payload = gzip.decompress(_shared_file(ELASTICC1_GZ).read_bytes())
    alert = avro.decode(avro.ELASTICC_V09_ALERT, payload)

    name = re.fullmatch(r"alert_mjd([\d.]+)_obj(\d+)_src(\d+)\.avro\.gz", ELASTICC1_GZ.name)
    assert name
    assert alert["alertId"] == alert["diaSource"]["diaSourceId"] == int(name[3]) == 208089362038
    assert alert["diaObject"]["diaObjectId"] == int(name[2]) == 104044681
    assert alert["diaSource"]["diaObjectId"] == 104044681
    assert alert["diaSource"]["filterName"] == "i"
    assert alert["diaSource"]["midPointTai"] == pytest.approx(60563.112, abs=1e-6)
    assert alert["diaSource"]["midPointTai"] == pytest.approx(float(name[1]), abs=1e-3)
    assert len(alert["prvDiaSources"]) == 4
    assert len(alert["prvDiaForcedSources"]) == 14
    assert alert["prvDiaNondetectionLimits"] is None
    assert alert["cutoutDifference"] is None
    assert alert["cutoutTemplate"] is None
    assert all(s["diaObjectId"] == 104044681 for s in alert["prvDiaForcedSources"])

    # Our schema writes exactly the bytes the survey wrote.
    assert avro.encode(avro.ELASTICC_V09_ALERT, alert, strict=True) == payload


def test_elasticc1_alert_is_not_taken_for_elasticc2() -> None:
    # Same leading fields, different records: the strict decoder notices.
    payload = gzip.decompress(_shared_file(ELASTICC1_GZ).read_bytes())
    with pytest.raises(avro.DecodeError, match=r"elasticc\.v0_9_1\.alert"):
        avro.decode_alert(payload)
    decoder = avro.AlertDecoder(unframed_schema=avro.ELASTICC_V09_ALERT)
    decoded = decoder.decode(payload)
    assert decoded.schema_name == avro.ELASTICC_V09_ALERT
    assert decoded.record["alertId"] == 208089362038


def test_elasticc1_container() -> None:
    records, writer_schema = _read_container(ELASTICC1_CONTAINER)
    assert _canonical(writer_schema) == _canonical(avro.load_schema(avro.ELASTICC_V09_ALERT))

    counts = {
        r["alertId"]: (len(r["prvDiaSources"] or []), len(r["prvDiaForcedSources"] or []))
        for r in records
    }
    assert counts == {22581688068: (0, 0), 22581688069: (1, 17), 22581688070: (2, 18)}
    for record in records:
        assert record["alertId"] == record["diaSource"]["diaSourceId"]
        assert record["diaObject"]["diaObjectId"] == 11290844
        payload = avro.encode(avro.ELASTICC_V09_ALERT, record, strict=True)
        assert avro.decode(avro.ELASTICC_V09_ALERT, payload) == record


# -------------------------------------------------------------------------------- Rubin data


@pytest.mark.parametrize(("version", "schema_id", "schema_name"), RUBIN_VERSIONS)
def test_rubin_fake_alert_confluent_round_trip(
    version: str, schema_id: int, schema_name: str
) -> None:
    record, writer_schema = _rubin_fake_alert(version)
    assert _canonical(writer_schema) == _canonical(avro.load_schema(schema_name))

    framed = avro.frame_confluent(schema_id, avro.encode(schema_name, record, strict=True))
    assert framed[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    decoded = avro.decode_alert(framed)
    assert decoded == avro.DecodedAlert(schema_name, record, framed=True, schema_id=schema_id)


@pytest.mark.parametrize(("version", "schema_id", "schema_name"), RUBIN_VERSIONS)
def test_rubin_fake_alert_matches_alert_json(
    version: str, schema_id: int, schema_name: str
) -> None:
    record, _ = _rubin_fake_alert(version)
    sample = json.loads(_shared_file(RUBIN / version / "alert.json").read_text())

    assert record["diaSourceId"] == sample["diaSourceId"] == 1231321321
    assert record["diaSource"]["diaSourceId"] == sample["diaSource"]["diaSourceId"]
    assert record["diaSource"]["band"] == sample["diaSource"]["band"] == "r"
    assert record["diaSource"]["midpointMjdTai"] == sample["diaSource"]["midpointMjdTai"]
    assert record["diaSource"]["psfFlux"] == pytest.approx(sample["diaSource"]["psfFlux"])
    assert record["diaObject"]["diaObjectId"] == sample["diaObject"]["diaObjectId"]
    assert [s["diaSourceId"] for s in record["prvDiaSources"]] == [
        s["diaSourceId"] for s in sample["prvDiaSources"]
    ]
    # alert.json has two diaSource fields the schema lacks (programId, x_y_Cov): a strict
    # encode refuses it, a lenient one drops them and writes exactly the fakeAlert record.
    with pytest.raises(ValueError, match="more fields"):
        avro.encode(schema_name, sample, strict=True)
    assert avro.encode(schema_name, sample) == avro.encode(schema_name, record)


def test_rubin_versions_are_not_interchangeable() -> None:
    record, _ = _rubin_fake_alert("v11_0")
    body = avro.encode(avro.LSST_V11_ALERT, record)
    with pytest.raises(avro.DecodeError, match=r"lsst\.v10_0\.alert"):
        avro.decode_alert(avro.frame_confluent(1000, body))


# ----------------------------------------------------------------------- ELAsTiCC2 (v0_9_1)


def test_elasticc2_alert_round_trip_unframed() -> None:
    alert = _elasticc2_alert()
    payload = avro.encode(avro.ELASTICC_ALERT, alert, strict=True)
    decoded = avro.decode_alert(payload)
    assert decoded == avro.DecodedAlert(avro.ELASTICC_ALERT, alert, framed=False)
    assert decoded.schema_id is None
    assert avro.decode(avro.ELASTICC_ALERT, payload) == alert


def test_elasticc2_alert_minimal_and_lenient_encode() -> None:
    alert = {"alertId": 5, "diaSource": _dia_source(5, 7, 60000.5, "Y")}
    with pytest.raises(ValueError):
        avro.encode(avro.ELASTICC_ALERT, {**alert, "band": "Y"}, strict=True)
    payload = avro.encode(avro.ELASTICC_ALERT, {**alert, "band": "Y"})  # unknown key dropped
    absent = {"prvDiaSources": None, "prvDiaForcedSources": None, "diaObject": None}
    assert avro.decode_alert(payload).record == {**alert, **absent}


@pytest.mark.parametrize("alert_id", [1, -1, 63, 64, 2**40 + 7, 2**63 - 1, -(2**63)])
def test_elasticc2_alert_never_starts_with_magic_byte(alert_id: int) -> None:
    # The zigzag varint of a long starts with byte 0 only for 0 (see AlertDecoder).
    payload = avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert(alert_id))
    assert payload[0] != avro.CONFLUENT_MAGIC
    assert avro.decode_alert(payload).record["alertId"] == alert_id


def test_elasticc2_alert_id_zero_is_read_as_framed() -> None:
    # Documented limitation: alertId 0 does not occur in ELAsTiCC, and its leading 0 byte is
    # indistinguishable from the Confluent magic byte.
    payload = avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert(0))
    assert payload[0] == 0
    with pytest.raises(avro.DecodeError, match="unknown schema id"):
        avro.decode_alert(payload)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    payload = avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert())
    expected = avro.decode_alert(payload)
    assert avro.decode_alert(bytearray(payload)) == expected
    assert avro.decode_alert(memoryview(payload)) == expected
    framed = avro.frame_confluent(42, avro.encode(avro.BROKER_CLASSIFICATION, _broker_message()))
    assert avro.decode_broker_message(memoryview(framed)) == _broker_message()


# ---------------------------------------------------------------------------- broker messages


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(_broker_message(), id="full"),
        pytest.param(_broker_message(brokerIngestTimestamp=None), id="no-ingest-time"),
        pytest.param(_broker_message(classifications=[]), id="no-classifications"),
    ],
)
def test_broker_message_round_trip(message: dict[str, Any]) -> None:
    body = avro.encode(avro.BROKER_CLASSIFICATION, message, strict=True)
    assert avro.decode_broker_message(body) == message
    for schema_id in (0, 1, 100042, 2**32 - 1):  # any registry id is accepted
        assert avro.decode_broker_message(avro.frame_confluent(schema_id, body)) == message


def test_broker_message_timestamps_come_back_as_utc_datetimes() -> None:
    millis = 1_700_017_445_678
    body = avro.encode(
        avro.BROKER_CLASSIFICATION,
        _broker_message(elasticcPublishTimestamp=millis, brokerIngestTimestamp=millis + 1),
    )
    decoded = avro.decode_broker_message(body)
    assert decoded["elasticcPublishTimestamp"] == datetime.fromtimestamp(millis / 1000, tz=UTC)
    assert decoded["brokerIngestTimestamp"].tzinfo is not None


def test_alert_is_not_a_broker_message() -> None:
    payload = avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert())
    with pytest.raises(avro.DecodeError, match="brokerClassification"):
        avro.decode_broker_message(payload)


# ------------------------------------------------------------------------ Confluent framing


def test_framing_helpers() -> None:
    assert avro.schema_id_for(10, 0) == 1000
    assert avro.schema_id_for(11, 0) == 1100
    assert avro.schema_id_for(7, 1) == 701
    for major, minor in ((10, 100), (10, -1), (-1, 0)):
        with pytest.raises(ValueError):
            avro.schema_id_for(major, minor)
    assert avro.frame_confluent(1000, b"body") == b"\x00\x00\x00\x03\xe8body"
    assert avro.unframe_confluent(b"\x00\x00\x00\x04\x4cbody") == (1100, b"body")
    assert avro.unframe_confluent(avro.frame_confluent(2**32 - 1, b"")) == (2**32 - 1, b"")
    for bad_id in (-1, 2**32):
        with pytest.raises(ValueError):
            avro.frame_confluent(bad_id, b"")
    for not_framed in (b"", b"\x00\x00\x00\x03", b"\x01\x00\x00\x03\xe8"):
        with pytest.raises(avro.DecodeError):
            avro.unframe_confluent(not_framed)


# ------------------------------------------------------------------------------------ garbage

Decoder = Callable[[bytes], object]
DECODERS: dict[str, Decoder] = {
    "alert": avro.decode_alert,
    "broker": avro.decode_broker_message,
    "elasticc2": lambda b: avro.decode(avro.ELASTICC_ALERT, b),
    "elasticc1": lambda b: avro.decode(avro.ELASTICC_V09_ALERT, b),
    "lsst_v10": lambda b: avro.decode(avro.LSST_V10_ALERT, b),
    "lsst_v11": lambda b: avro.decode(avro.LSST_V11_ALERT, b),
}


def _valid_payloads() -> Iterator[tuple[str, str, bytes]]:
    """(id, decoder, payload) for valid messages; the Rubin ones only if the samples exist."""
    yield "elasticc2", "alert", avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert())
    body = avro.encode(avro.BROKER_CLASSIFICATION, _broker_message())
    yield "broker", "broker", body
    yield "broker-framed", "broker", avro.frame_confluent(7, body)
    for version, schema_id, schema_name in (
        ("v10_0", 1000, avro.LSST_V10_ALERT),
        ("v11_0", 1100, avro.LSST_V11_ALERT),
    ):
        path = RUBIN / version / "fakeAlert.avro"
        if path.is_file():
            record, _ = _rubin_fake_alert(version)
            body = avro.encode(schema_name, record)
            yield f"lsst-{version}", "alert", avro.frame_confluent(schema_id, body)
    if ELASTICC1_GZ.is_file():
        yield "elasticc1", "elasticc1", gzip.decompress(ELASTICC1_GZ.read_bytes())


VALID = [pytest.param(decoder, payload, id=name) for name, decoder, payload in _valid_payloads()]


def _decodes_or_decode_error(decoder: Decoder, payload: bytes) -> bool:
    """True if decoded, False on DecodeError; any other exception fails the test."""
    try:
        decoder(payload)
    except avro.DecodeError:
        return False
    return True


@pytest.mark.parametrize("decoder", DECODERS.values(), ids=DECODERS.keys())
def test_empty_input(decoder: Decoder) -> None:
    with pytest.raises(avro.DecodeError, match="empty"):
        decoder(b"")


def test_none_is_a_decode_error() -> None:  # a Kafka tombstone has no value
    with pytest.raises(avro.DecodeError):
        avro.decode_alert(None)
    with pytest.raises(avro.DecodeError):
        avro.decode_broker_message(None)


@pytest.mark.parametrize("decoder", DECODERS.values(), ids=DECODERS.keys())
def test_random_bytes(decoder: Decoder) -> None:
    rng = random.Random(20231115)
    for n in range(400):
        payload = rng.randbytes(rng.randrange(1, 400))
        if n % 4 == 0:  # also exercise the Confluent branch with the known ids
            payload = avro.frame_confluent(rng.choice([1000, 1100]), payload)
        _decodes_or_decode_error(decoder, payload)


@pytest.mark.parametrize(("decoder", "payload"), VALID)
def test_every_truncation_is_a_decode_error(decoder: str, payload: bytes) -> None:
    decode = DECODERS[decoder]
    assert _decodes_or_decode_error(decode, payload)
    for size in range(len(payload)):
        assert not _decodes_or_decode_error(decode, payload[:size]), f"prefix of {size} bytes"


@pytest.mark.parametrize(("decoder", "payload"), VALID)
def test_trailing_bytes_are_a_decode_error(decoder: str, payload: bytes) -> None:
    with pytest.raises(avro.DecodeError, match="trailing"):
        DECODERS[decoder](payload + b"\x00")


@pytest.mark.parametrize(("decoder", "payload"), VALID)
def test_corrupted_bytes(decoder: str, payload: bytes) -> None:
    rng = random.Random(len(payload))
    decode = DECODERS[decoder]
    for _ in range(300):
        corrupted = bytearray(payload)
        for _ in range(rng.randrange(1, 4)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        _decodes_or_decode_error(decode, bytes(corrupted))


@pytest.mark.parametrize("schema_id", [0, 1, 999, 1001, 1200, 2**32 - 1])
def test_unknown_confluent_schema_id(schema_id: int) -> None:
    body = avro.encode(avro.ELASTICC_ALERT, _elasticc2_alert())
    with pytest.raises(avro.DecodeError, match=rf"unknown schema id {schema_id}\b"):
        avro.decode_alert(avro.frame_confluent(schema_id, body))


def test_short_frame_is_a_decode_error() -> None:
    for payload in (b"\x00", b"\x00\x00\x00\x03", b"\x00\x00\x00\x03\xe8"):
        with pytest.raises(avro.DecodeError):
            avro.decode_alert(payload)
        with pytest.raises(avro.DecodeError):
            avro.decode_broker_message(payload)


def test_custom_registry() -> None:
    decoder = avro.AlertDecoder({77: avro.ELASTICC_ALERT})
    alert = _elasticc2_alert()
    framed = avro.frame_confluent(77, avro.encode(avro.ELASTICC_ALERT, alert))
    assert decoder.decode(framed) == avro.DecodedAlert(avro.ELASTICC_ALERT, alert, True, 77)
    assert dict(decoder.confluent_schemas) == {77: avro.ELASTICC_ALERT}
    with pytest.raises(avro.DecodeError, match="unknown schema id 1000"):
        decoder.decode(avro.frame_confluent(1000, b"\x02"))
    with pytest.raises(avro.SchemaNotFoundError):  # a bad registry fails at start-up
        avro.AlertDecoder({1: "lsst.v99_0.alert"})

"""Alerts of each supported schema, as the rows ingest stores."""

from __future__ import annotations

import math

import fastavro
import pytest
from conftest import SHARED, missing_reference

from tomstream import avro
from tomstream.avro import DecodeError
from tomstream.services.ingest.alerts import alert_rows


def elasticc_alert(history: int = 2) -> dict:
    def source(k: int) -> dict:
        return {
            "diaSourceId": 500 + k, "diaObjectId": 5, "midPointTai": 60000.0 + k,
            "filterName": "g", "ra": 1.5, "decl": -2.5, "psFlux": 100.0 + k, "psFluxErr": 2.0,
            "snr": 50.0,
        }  # fmt: skip

    return {
        "alertId": 500 + history,
        "diaSource": source(history),
        "prvDiaSources": [source(k) for k in range(history)],
        "prvDiaForcedSources": [
            {
                "diaForcedSourceId": 900 + k,
                "diaObjectId": 5,
                "midPointTai": 59990.0 + k,
                "filterName": "r",
                "psFlux": 1.0,
                "psFluxErr": 1.0,
            }
            for k in range(3)
        ],
        "diaObject": {
            "diaObjectId": 5,
            "simVersion": None,
            "ra": 1.5,
            "decl": -2.5,
            "mwebv": 0.02,
            "mwebv_err": None,
            "z_final": 0.25,
            "z_final_err": 0.01,
            "hostgal_mag_u": 22.5,
        },
    }


def test_an_elasticc_alert_becomes_its_rows() -> None:
    rows = alert_rows(avro.decode_alert(avro.encode(avro.ELASTICC_ALERT, elasticc_alert())))
    assert (rows.alert_id, rows.diasource_id, rows.diaobject_id) == (502, 502, 5)
    assert rows.mjd == 60002.0
    assert [s[0] for s in rows.sources] == [502, 500, 501]  # the alert's own detection first
    assert rows.sources[0][3] == "g"
    assert [f[0] for f in rows.forced] == [900, 901, 902]
    assert rows.obj is not None
    assert (rows.obj.redshift, rows.obj.alert_mjd) == (pytest.approx(0.25), 60002.0)
    assert rows.obj.properties["hostgal_mag_u"] == pytest.approx(22.5)
    assert "ra" not in rows.obj.properties


@pytest.mark.parametrize(("version", "schema_id"), [("v10_0", 1000), ("v11_0", 1100)])
def test_a_framed_rubin_alert_becomes_its_rows(version: str, schema_id: int) -> None:
    path = SHARED / "reference" / "avro" / "lsst" / version / "fakeAlert.avro"
    if not path.is_file():
        missing_reference(f"Rubin sample not found: {path}")
    with path.open("rb") as f:
        record = next(iter(fastavro.reader(f)))
    schema = avro.LSST_V10_ALERT if version == "v10_0" else avro.LSST_V11_ALERT
    payload = avro.frame_confluent(schema_id, avro.encode(schema, record))
    rows = alert_rows(avro.decode_alert(payload))
    assert rows.schema_name == schema
    assert rows.alert_id == record["diaSourceId"]
    assert rows.diasource_id == record["diaSource"]["diaSourceId"]
    assert rows.mjd == record["diaSource"]["midpointMjdTai"]
    assert rows.sources[0][3] == record["diaSource"]["band"]
    if record.get("diaObject"):
        assert rows.obj is not None
        assert rows.obj.decl == record["diaObject"]["dec"]
        for value in rows.obj.properties.values():
            assert not (isinstance(value, float) and not math.isfinite(value))


def test_an_alert_of_an_unsupported_schema_is_a_decode_error() -> None:
    decoded = avro.DecodedAlert(avro.ELASTICC_V09_ALERT, {}, framed=False)
    with pytest.raises(DecodeError, match="does not read"):
        alert_rows(decoded)

"""The ELAsTiCC2 rules of the simulated survey and the pure alert builder (no servers)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tomstream import avro
from tomstream.services.sim import alerts
from tomstream.services.sim.alerts import through_mjd_after
from tomstream.services.sim.storage import OBJECT_AVRO_FIELDS

OBJECT_ID = 1696949
Record = dict[str, Any]
SIM_VERSION = "2023-04-01"


def _columns(records: list[dict[str, Any]], fields: list[str]) -> dict[str, np.ndarray]:
    return {name: np.array([record[name] for record in records]) for name in fields}


def _batch(
    source_times: list[float], forced_times: list[float], isddf: bool = False
) -> alerts.EncodedBatch:
    """One object's rows (in time order, as the database returns them), encoded."""
    objects: dict[str, Any] = {field: np.array([-9.0]) for field in OBJECT_AVRO_FIELDS.values()}
    objects |= {
        "diaObjectId": np.array([OBJECT_ID]),
        "simVersion": np.array([SIM_VERSION]),
        "ra": np.array([210.234375]),
        "decl": np.array([4.031936]),
        "hostgal2_zphot_q000": np.array([np.nan]),  # NULL: galactic models have no quantiles
        "isddf": np.array([isddf]),
    }
    sources = [
        {
            "diaSourceId": OBJECT_ID * 100_000 + index,
            "diaObjectId": OBJECT_ID,
            "midPointTai": time,
            "filterName": "r",
            "ra": 210.234375,
            "decl": 4.031936,
            "psFlux": 1060.5,
            "psFluxErr": 197.25,
            "snr": 5.375,
        }
        for index, time in enumerate(sorted(source_times))
    ]
    forced = [
        {
            "diaForcedSourceId": OBJECT_ID * 100_000 + 1000 + index,
            "diaObjectId": OBJECT_ID,
            "midPointTai": time,
            "filterName": "Y",
            "psFlux": -12.5,
            "psFluxErr": 150.0,
        }
        for index, time in enumerate(sorted(forced_times))
    ]
    source_fields = [f.name for f in alerts.record_layout(alerts.DIA_SOURCE)]
    forced_fields = [f.name for f in alerts.record_layout(alerts.DIA_FORCED_SOURCE)]
    return alerts.encode_batch(
        objects, _columns(sources, source_fields), _columns(forced, forced_fields)
    )


def _messages(batch: alerts.EncodedBatch, at: float) -> dict[str, Record]:
    """The decoded messages, by topic, of the alert of the source at time ``at``."""
    (source_id,) = (sid for sid, (_, _, time) in batch.sources.items() if time == at)
    return {
        topic: avro.decode(avro.ELASTICC_ALERT, payload)
        for topic, payload in batch.messages(source_id, source_id)
    }


def _alert(source_times: list[float], forced_times: list[float], at: float) -> Record:
    return _messages(_batch(source_times, forced_times), at)["alerts-wfd"]


def _times(rows: list[dict[str, Any]]) -> list[float]:
    return [row["midPointTai"] for row in rows]


# ---------------------------------------------------------------------------- loader rules


def test_fluxcal_is_scaled_from_zero_point_27_5_to_31_4() -> None:
    assert pytest.approx(10 ** (3.9 / 2.5)) == alerts.NJY_PER_FLUXCAL
    assert alerts.fluxcal_to_njy([1.0, -2.0]) == pytest.approx([36.3078, -72.6156], rel=1e-5)
    # A flux of magnitude 31.4 is 1 nJy, i.e. FLUXCAL 10^(-0.4 * (31.4 - 27.5)).
    assert alerts.fluxcal_to_njy(10 ** (-0.4 * 3.9)) == pytest.approx(1.0)


def test_forced_source_ids_are_object_id_times_100000_plus_epoch_index() -> None:
    ids = alerts.forced_source_ids([397127, 397127, 5], [0, 178, 99_999])
    assert ids.tolist() == [39712700000, 39712700178, 599_999]
    with pytest.raises(ValueError, match="100000"):
        alerts.forced_source_ids([5], [100_000])


def test_more_than_1000_epochs_is_ddf() -> None:
    assert alerts.is_ddf([1, 1000, 1001]).tolist() == [False, False, True]


def test_photflag_4096_is_a_detection() -> None:
    assert alerts.detected([0, 4096, 6144, 2048]).tolist() == [False, True, True, False]


# -------------------------------------------------------------------------- sender rules


@pytest.mark.parametrize(
    ("last", "added", "through"),
    [
        (60575.3, 100, 60675.5),  # before noon UTC: still that night's day
        (60575.5, 100, 60676.5),  # a day ends at x.5 (8:00 in Chile)
        (60575.9, 100, 60676.5),
        (60575.3, 0, 60575.5),  # zero days: finish the day of the last alert
        (60575.3, 1.5, 60577.0),
    ],
)
def test_added_days_continue_from_the_day_of_the_last_sent_alert(
    last: float, added: float, through: float
) -> None:
    assert through_mjd_after(last, added) == pytest.approx(through)
    assert through == math.floor(last + 0.5) + added + 0.5


def test_wfd_alerts_go_to_one_topic_ddf_alerts_to_a_full_and_a_limited_one() -> None:
    assert alerts.routes(False) == (alerts.Route("alerts-wfd", 365.0),)
    assert alerts.routes(True) == (
        alerts.Route("alerts-ddf-full", 365.0),
        alerts.Route("alerts-ddf-limited", 30.0),
    )
    assert set(alerts.ALERT_TOPICS) == {"alerts-wfd", "alerts-ddf-full", "alerts-ddf-limited"}


# ----------------------------------------------------------------------- history windows


def test_prv_dia_sources_are_the_earlier_sources_of_the_last_365_days() -> None:
    t = 61000.0
    alert = _alert([t - 365.001, t - 365.0, t - 100.0, t - 0.001, t, t + 1.0], [], t)
    # Exactly 365 days before is in; just over is out; the alert's own source and later
    # ones are out (strictly earlier).
    assert _times(alert["prvDiaSources"]) == [t - 365.0, t - 100.0, t - 0.001]
    assert alert["diaSource"]["midPointTai"] == t
    assert alert["alertId"] == alert["diaSource"]["diaSourceId"]


def test_the_first_alert_has_empty_histories() -> None:
    alert = _alert([60000.0, 60001.0], [59990.0, 59999.0], 60000.0)
    assert alert["prvDiaSources"] == []
    assert alert["prvDiaForcedSources"] == []


def test_forced_photometry_only_more_than_half_a_day_after_the_first_detection() -> None:
    first = 60000.0
    forced = [first - 1.0, first, first + 0.2]
    exactly_half = _alert([first, first + 0.5], forced, first + 0.5)
    assert exactly_half["prvDiaForcedSources"] == []
    assert _times(exactly_half["prvDiaSources"]) == [first]  # sources do not wait
    just_after = _alert([first, first + 0.5001], forced, first + 0.5001)
    assert _times(just_after["prvDiaForcedSources"]) == forced


def test_forced_photometry_starts_30_days_before_the_first_detection() -> None:
    first = 60000.0
    forced = [first - 30.001, first - 30.0, first - 5.0, first + 3.0, first + 10.0, first + 11.0]
    alert = _alert([first, first + 10.0], forced, first + 10.0)
    # Strictly earlier than the alert: the forced point at the alert's own time is out.
    assert _times(alert["prvDiaForcedSources"]) == [first - 30.0, first - 5.0, first + 3.0]


def test_forced_photometry_of_a_long_lived_object_is_limited_to_365_days() -> None:
    first = 60000.0
    t = first + 400.0
    alert = _alert([first, t], [first - 10.0, t - 365.001, t - 365.0, t - 1.0], t)
    assert _times(alert["prvDiaForcedSources"]) == [t - 365.0, t - 1.0]


def test_a_ddf_alert_goes_to_both_ddf_topics_the_limited_one_with_30_days() -> None:
    first = 60000.0
    t = first + 60.0
    batch = _batch([first, t - 30.5, t - 30.0, t], [first - 1.0, t - 31.0, t - 29.0], True)
    messages = _messages(batch, t)
    assert list(messages) == ["alerts-ddf-full", "alerts-ddf-limited"]
    full, limited = messages["alerts-ddf-full"], messages["alerts-ddf-limited"]
    assert _times(full["prvDiaSources"]) == [first, t - 30.5, t - 30.0]
    assert _times(limited["prvDiaSources"]) == [t - 30.0]
    assert _times(full["prvDiaForcedSources"]) == [first - 1.0, t - 31.0, t - 29.0]
    assert _times(limited["prvDiaForcedSources"]) == [t - 29.0]
    assert full["alertId"] == limited["alertId"]
    assert list(_messages(_batch([first, t], []), t)) == ["alerts-wfd"]


# ------------------------------------------------------------------------------- encoding


def test_the_object_columns_are_exactly_the_diaobject_record_fields() -> None:
    schema = avro.load_schema(alerts.DIA_OBJECT)
    assert sorted(OBJECT_AVRO_FIELDS.values()) == sorted(f["name"] for f in schema["fields"])
    assert OBJECT_AVRO_FIELDS["hostgal_mag_y"] == "hostgal_mag_Y"
    assert OBJECT_AVRO_FIELDS["hostgal2_magerr_y"] == "hostgal2_magerr_Y"


def test_an_alert_is_byte_for_byte_what_fastavro_writes() -> None:
    first = 60000.0
    batch = _batch([first, first + 1.0, first + 3.0], [first - 3.0, first + 0.5, first + 2.0])
    source_id = OBJECT_ID * 100_000 + 2
    ((topic, payload),) = batch.messages(source_id, source_id)
    decoded = avro.decode_alert(payload)  # exactly one record, no bytes left over
    assert (topic, decoded.schema_name, decoded.framed) == (
        "alerts-wfd",
        avro.ELASTICC_ALERT,
        False,
    )
    record = decoded.record
    assert avro.encode(avro.ELASTICC_ALERT, record, strict=True) == payload
    assert record["alertId"] == source_id
    assert record["diaSource"] == {
        "diaSourceId": source_id,
        "diaObjectId": OBJECT_ID,
        "midPointTai": first + 3.0,
        "filterName": "r",
        "ra": 210.234375,
        "decl": 4.031936,
        "psFlux": 1060.5,
        "psFluxErr": 197.25,
        "snr": 5.375,
    }
    assert [s["diaSourceId"] for s in record["prvDiaSources"]] == [source_id - 2, source_id - 1]
    assert record["prvDiaForcedSources"][0] == {
        "diaForcedSourceId": OBJECT_ID * 100_000 + 1000,
        "diaObjectId": OBJECT_ID,
        "midPointTai": first - 3.0,
        "filterName": "Y",
        "psFlux": -12.5,
        "psFluxErr": 150.0,
    }
    assert len(record["prvDiaForcedSources"]) == 3
    diaobject = record["diaObject"]
    assert (diaobject["diaObjectId"], diaobject["simVersion"]) == (OBJECT_ID, SIM_VERSION)
    assert diaobject["hostgal2_zphot_q000"] is None
    assert diaobject["hostgal_mag_Y"] == -9.0


@pytest.mark.parametrize("schema_name", [alerts.DIA_SOURCE, alerts.DIA_OBJECT])
def test_encoded_records_match_fastavro(schema_name: str) -> None:
    rng = np.random.default_rng(7)
    n = 200
    columns: dict[str, np.ndarray] = {}
    for field in alerts.record_layout(schema_name):
        if field.kind == "long":
            values = rng.integers(-(2**62), 2**62, n)
            values[:9] = [0, -1, 1, 63, 64, -64, -65, -(2**63), 2**63 - 1]  # varint edges
        elif field.kind == "string":
            values = rng.choice(np.array(["u", "Y", "ab", "", "é"]), n)
        else:
            values = rng.normal(0.0, 1e4, n)
            if field.nullable:
                values[rng.random(n) < 0.3] = np.nan  # written as null
        columns[field.name] = values
    rows = alerts.encode_records(schema_name, columns)
    assert len(rows) == n
    for i in range(n):
        record = {
            name: None if isinstance(v[i], float) and np.isnan(v[i]) else v[i].item()
            for name, v in columns.items()
        }
        assert rows.span(i, i + 1) == avro.encode(schema_name, record), i


def test_alert_flux_of_a_detection_is_its_scaled_fluxcal_and_snr_their_ratio() -> None:
    fluxcal, fluxcal_err = np.array([29.2]), np.array([5.433])
    flux, err = alerts.fluxcal_to_njy(fluxcal), alerts.fluxcal_to_njy(fluxcal_err)
    assert flux[0] / err[0] == pytest.approx(29.2 / 5.433)
    assert flux[0] == pytest.approx(1060.2, abs=0.1)

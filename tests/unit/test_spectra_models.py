"""Request validation of the spectra API: a client's mistake is a clear 400, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tomstream.services.spectra_api import models
from tomstream.services.spectra_api.errors import describe_validation_errors


def error_of(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return describe_validation_errors(caught.value.errors())


def test_ltcv_takes_exactly_one_of_objectid_and_objectids_scalar_or_list() -> None:
    assert models.LtcvRequest(objectid=5).object_ids == [5]
    assert models.LtcvRequest(objectids=[7, 3, 7]).object_ids == [3, 7]
    assert models.LtcvRequest(objectids=4).object_ids == [4]
    assert models.LtcvRequest(objectid=[2, 1]).object_ids == [1, 2]
    assert "only one of objectid and objectids" in error_of(
        models.LtcvRequest, {"objectid": 1, "objectids": [2]}
    )
    assert "one of objectid or objectids" in error_of(models.LtcvRequest, {})
    assert "objectids" in error_of(models.LtcvRequest, {"objectids": []})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"objectid": 1, "colour": "red"}, "unknown key 'colour'"),
        ({"objectid": -1}, "objectid"),
        ({"objectid": 2**63}, "objectid"),
        ({"objectid": 1, "return_format": 3}, "return_format"),
        ({"objectid": 1, "mjd_now": 1e308}, "mjd_now"),
        ({"objectid": "one"}, "objectid"),
    ],
)
def test_ltcv_mistakes_name_the_key(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(models.LtcvRequest, data)


def test_hot_transients_windows_are_exclusive() -> None:
    assert models.HotTransientsRequest().detected_in_last_days is None
    message = error_of(
        models.HotTransientsRequest, {"detected_since_mjd": 60000, "detected_in_last_days": 3}
    )
    assert "only one of detected_since_mjd and detected_in_last_days" in message
    assert "cheat_gentypes" in error_of(models.HotTransientsRequest, {"cheat_gentypes": [10]})


def test_ask_for_spectrum_needs_equal_lengths_and_priorities_1_to_5() -> None:
    ok = models.AskForSpectrumRequest(requester=" RESSPECT ", objectids=[1, 2], priorities=[5, 1])
    assert ok.requester == "RESSPECT"
    assert "same length (2 and 1)" in error_of(
        models.AskForSpectrumRequest, {"requester": "r", "objectids": [1, 2], "priorities": [3]}
    )
    assert "priorities.0" in error_of(
        models.AskForSpectrumRequest, {"requester": "r", "objectids": [1], "priorities": [6]}
    )
    assert "missing key 'requester'" in error_of(
        models.AskForSpectrumRequest, {"objectids": [1], "priorities": [3]}
    )
    assert "requester" in error_of(
        models.AskForSpectrumRequest, {"requester": "a\x00b", "objectids": [1], "priorities": [3]}
    )


def test_spectra_wanted_checks_its_options() -> None:
    assert models.SpectraWantedRequest().not_claimed_in_last_days == 7
    assert "lim_mag_band needs lim_mag" in error_of(
        models.SpectraWantedRequest, {"lim_mag_band": "r"}
    )
    assert "lim_mag_band" in error_of(
        models.SpectraWantedRequest, {"lim_mag": 20, "lim_mag_band": "q"}
    )
    since = models.SpectraWantedRequest(requested_since="2024-05-01 12:30:00").requested_since
    assert since == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert "requested_since" in error_of(models.SpectraWantedRequest, {"requested_since": 60000})
    assert "between the years 1800 and 3000" in error_of(
        models.SpectraWantedRequest, {"requested_since": "9999-12-31T23:00:00-05:00"}
    )


def test_a_spectrum_report_takes_blank_for_unknown_and_only_taxonomy_classes() -> None:
    report = models.ReportSpectrumInfoRequest(
        objectid=1, facility="Keck", mjd=60300.5, z="", classid=""
    )
    assert (report.z, report.classid) == (None, None)
    assert (
        models.ReportSpectrumInfoRequest(
            objectid=1, facility="Keck", mjd=60300.5, z=0.25, classid=2222
        ).classid
        == 2222
    )
    assert "not a class id of the ELAsTiCC2 taxonomy" in error_of(
        models.ReportSpectrumInfoRequest,
        {"objectid": 1, "facility": "Keck", "mjd": 1, "z": None, "classid": 111},
    )
    # DESC requires every key, the two nullable ones included.
    assert "missing key 'z'" in error_of(
        models.ReportSpectrumInfoRequest,
        {"objectid": 1, "facility": "Keck", "mjd": 1, "classid": None},
    )
    assert "facility" in error_of(
        models.ReportSpectrumInfoRequest,
        {"objectid": 1, "facility": "  ", "mjd": 1, "z": None, "classid": None},
    )


def test_a_plan_time_is_a_date_or_date_time_string() -> None:
    assert models.PlanSpectrumRequest(
        objectid=1, facility="Gemini", plantime="2024-03-02"
    ).plantime == datetime(2024, 3, 2, tzinfo=UTC)
    assert "plantime" in error_of(
        models.PlanSpectrumRequest, {"objectid": 1, "facility": "G", "plantime": "tomorrow"}
    )


def test_getalert_takes_one_of_alertid_and_sourceid() -> None:
    assert models.GetAlertRequest(sourceid=3).sourceid == 3
    assert "give one of alertid or sourceid" in error_of(models.GetAlertRequest, {})


def test_broker_messages_are_storable() -> None:
    message = {
        "alertId": 1,
        "diaSourceId": 1,
        "elasticcPublishTimestamp": 1_700_000_000_000,
        "brokerIngestTimestamp": None,
        "brokerName": "B",
        "brokerVersion": "1",
        "classifierName": "C",
        "classifierParams": "",
        "classifications": [{"classId": 2222, "probability": 1e-300}],
    }
    parsed = models.BrokerMessageIn.model_validate(message)
    # What a 32-bit Avro float (and the real column) can hold: no overflow in the database.
    assert parsed.classifications[0].probability == 0.0
    bad = {**message, "classifications": [{"classId": 2222, "probability": 1.5}]}
    assert "classifications.0.probability" in error_of(models.BrokerMessageIn, bad)
    assert "classId" in error_of(
        models.BrokerMessageIn,
        {**message, "classifications": [{"classId": 40000, "probability": 1}]},
    )

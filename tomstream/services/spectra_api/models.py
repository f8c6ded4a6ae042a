"""Request and response models of the ``elasticc2/*`` API: the DESC TOM's key names and shapes.

Requests forbid unknown keys and check ranges, so a client's mistake is a 400 that names the key
instead of a 500. Response models document the shapes (``/openapi.json``); the endpoints build
the JSON themselves, because validating megabytes of light curves again would cost more than
the query.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from tomstream.services.spectra_api import taxonomy
from tomstream.storage.postgres import BIGINT_MAX, storable_text


def _utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        utc = datetime.min.replace(tzinfo=UTC)
    # Bounded so that date arithmetic (and PostgreSQL) never overflows.
    if not 1800 <= utc.year <= 3000:
        raise ValueError("must be between the years 1800 and 3000")
    return utc


def _only_text(value: Any) -> Any:
    # pydantic would read a bare number as seconds since 1970; a DESC client sends strings.
    if not isinstance(value, str | datetime):
        raise ValueError("must be a date or date-time string, e.g. 2024-05-01 or 2024-05-01T12:00")
    return value


def _known_class(value: int) -> int:
    if not taxonomy.is_known(value):
        raise ValueError(f"{value} is not a class id of the ELAsTiCC2 taxonomy (see classids)")
    return value


def _blank_is_null(value: Any) -> Any:
    # The DESC TOM documents "" for "could not be determined" in spectrum reports.
    return None if value == "" else value


ObjectId = Annotated[int, Field(ge=0, le=BIGINT_MAX, description="diaObjectId")]
Mjd = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False, description="MJD")]
Days = Annotated[float, Field(ge=0, le=36_500, allow_inf_nan=False)]
WindowDays = Annotated[
    float,
    Field(ge=-36_500, le=36_500, allow_inf_nan=False, description="days; 0 or less: no window"),
]
Priority = Annotated[int, Field(ge=1, le=5, description="1 (low) to 5 (high)")]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(storable_text),
]
Comment = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(storable_text)]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_only_text),
    AfterValidator(_utc),
    WithJsonSchema(
        {"type": "string", "description": "ISO 8601 date or date-time (UTC unless it names a zone)"}
    ),
]
Redshift = Annotated[float, Field(ge=-1, le=100, allow_inf_nan=False)]
Magnitude = Annotated[float, Field(ge=-50, le=100, allow_inf_nan=False)]
ClassId = Annotated[
    int,
    Field(ge=0, le=32_767, description="a class id of the ELAsTiCC2 taxonomy"),
    AfterValidator(_known_class),
]
Band = Literal["u", "g", "r", "i", "z", "Y", "y"]
ObjectIds = Annotated[list[ObjectId], Field(min_length=1)]


class ApiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _exclusive(model: BaseModel, first: str, second: str, *, required: bool) -> None:
    given = [name for name in (first, second) if getattr(model, name) is not None]
    if len(given) == 2:
        raise ValueError(f"give only one of {first} and {second}")
    if required and not given:
        raise ValueError(f"give one of {first} or {second}")


class LightCurveOptions(ApiRequest):
    mjd_now: Mjd | None = Field(
        None, description="the current MJD: no photometry (or detection) after it is used"
    )
    include_hostinfo: bool = Field(False, description="add the first host galaxy's properties")
    return_format: Literal[0, 1, 2] = Field(
        0,
        description="0: list of objects with a photometry dict; 1: list of flat objects; "
        "2: one dict of parallel lists",
    )


class LtcvRequest(LightCurveOptions):
    objectid: ObjectId | ObjectIds | None = None
    objectids: ObjectId | ObjectIds | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LtcvRequest:
        _exclusive(self, "objectid", "objectids", required=True)
        return self

    @property
    def object_ids(self) -> list[int]:
        given = self.objectid if self.objectid is not None else self.objectids
        return sorted(set(given if isinstance(given, list) else [given]))  # type: ignore[arg-type]


class HotTransientsRequest(LightCurveOptions):
    detected_since_mjd: Mjd | None = None
    detected_in_last_days: Days | None = Field(
        None, description="default 30 (when detected_since_mjd is not given)"
    )

    @model_validator(mode="after")
    def _one_of(self) -> HotTransientsRequest:
        _exclusive(self, "detected_since_mjd", "detected_in_last_days", required=False)
        return self


class AskForSpectrumRequest(ApiRequest):
    requester: Name
    objectids: ObjectIds
    priorities: Annotated[list[Priority], Field(min_length=1)]

    @model_validator(mode="after")
    def _same_length(self) -> AskForSpectrumRequest:
        if len(self.objectids) != len(self.priorities):
            raise ValueError(
                f"objectids and priorities must have the same length "
                f"({len(self.objectids)} and {len(self.priorities)})"
            )
        return self


class SpectraWantedRequest(ApiRequest):
    requested_since: Timestamp | None = Field(None, description="default: 14 days before now")
    not_claimed_in_last_days: WindowDays = 7
    no_spectra_in_last_days: WindowDays = 7
    detected_since_mjd: Mjd | None = None
    detected_in_last_days: Days | None = Field(
        None, description="default 14 (when detected_since_mjd is not given)"
    )
    mjd_now: Mjd | None = Field(
        None, description="the current MJD: every window ends (and defaults) relative to it"
    )
    lim_mag: Magnitude | None = Field(
        None,
        description="keep objects whose latest magnitude (in lim_mag_band, or any band) is "
        "at most this",
    )
    lim_mag_band: Band | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SpectraWantedRequest:
        _exclusive(self, "detected_since_mjd", "detected_in_last_days", required=False)
        if self.lim_mag_band is not None and self.lim_mag is None:
            raise ValueError("lim_mag_band needs lim_mag")
        return self


class PlanSpectrumRequest(ApiRequest):
    objectid: ObjectId
    facility: Name
    plantime: Timestamp | None = None
    comment: Comment = ""


class RemoveSpectrumPlanRequest(ApiRequest):
    objectid: ObjectId
    facility: Name


class ReportSpectrumInfoRequest(ApiRequest):
    objectid: ObjectId
    facility: Name
    mjd: Mjd
    z: Annotated[Redshift | None, BeforeValidator(_blank_is_null)]
    classid: Annotated[ClassId | None, BeforeValidator(_blank_is_null)]


class KnownSpectrumInfoRequest(ApiRequest):
    objectid: ObjectId | ObjectIds | None = None
    facility: Name | None = None
    classid: ClassId | None = None
    z_min: Redshift | None = None
    z_max: Redshift | None = None
    mjd_min: Mjd | None = None
    mjd_max: Mjd | None = None
    since: Timestamp | None = Field(None, description="reported at or after this time")


class GetAlertRequest(ApiRequest):
    alertid: ObjectId | None = None
    sourceid: ObjectId | None = None

    @model_validator(mode="after")
    def _one_of(self) -> GetAlertRequest:
        _exclusive(self, "alertid", "sourceid", required=True)
        return self


EpochMs = Annotated[int, Field(ge=0, le=253_402_300_799_999, description="ms since 1970 (UTC)")]
AvroText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(storable_text)]
NonEmptyAvroText = Annotated[AvroText, StringConstraints(min_length=1)]


def _float32(value: float) -> float:
    # Probabilities are Avro floats (and PostgreSQL reals): keep what 32 bits hold, so a tiny
    # value becomes 0 as it would on the Kafka path instead of overflowing the column.
    return float(struct.unpack("f", struct.pack("f", value))[0])


class ClassificationIn(ApiRequest):
    classId: Annotated[int, Field(ge=0, le=32_767)]
    probability: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), AfterValidator(_float32)]


class BrokerMessageIn(ApiRequest):
    """One ELAsTiCC2 brokerClassification (v0_9_1) as JSON, timestamps in milliseconds."""

    alertId: ObjectId
    diaSourceId: ObjectId
    elasticcPublishTimestamp: EpochMs
    brokerIngestTimestamp: EpochMs | None = None
    brokerPublishTimestamp: EpochMs | None = Field(
        None, description="when the broker published the classification (DESC TOM extension)"
    )
    brokerName: NonEmptyAvroText
    brokerVersion: AvroText
    classifierName: NonEmptyAvroText
    classifierParams: AvroText
    classifications: Annotated[list[ClassificationIn], Field(max_length=1000)]


BrokerMessages = BrokerMessageIn | Annotated[list[BrokerMessageIn], Field(min_length=1)]


# ------------------------------------------------------------------------------------- responses


class Ok(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorResponse(BaseModel):
    status: Literal["error"] = "error"
    error: str


class HostInfo(BaseModel):
    """Present only with include_hostinfo; values as the alerts carried them (SNANA sentinels
    such as -9 or 999 included), null if absent."""

    hostgal_mag_u: float | None = None
    hostgal_mag_g: float | None = None
    hostgal_mag_r: float | None = None
    hostgal_mag_i: float | None = None
    hostgal_mag_z: float | None = None
    hostgal_mag_y: float | None = None
    hostgal_magerr_u: float | None = None
    hostgal_magerr_g: float | None = None
    hostgal_magerr_r: float | None = None
    hostgal_magerr_i: float | None = None
    hostgal_magerr_z: float | None = None
    hostgal_magerr_y: float | None = None
    hostgal_ellipticity: float | None = None
    hostgal_sqradius: float | None = None
    hostgal_snsep: float | None = None


class Photometry(BaseModel):
    mjd: list[float]
    band: list[str]
    flux: list[float | None] = Field(description="nJy (zero point 31.4)")
    fluxerr: list[float | None]


class ObjectSummary(HostInfo):
    objectid: int
    ra: float
    dec: float
    zp: float = Field(description="zero point of the fluxes: 31.4 (nJy)")
    redshift: float = Field(description="best known redshift, -99 if unknown")
    sncode: int = Field(description="best known class id, -99 if unknown")


class LightCurve(ObjectSummary):
    photometry: Photometry


class FlatLightCurve(ObjectSummary, Photometry):
    pass


class LightCurveColumns(BaseModel):
    objectid: list[int]
    ra: list[float]
    dec: list[float]
    mjd: list[list[float]]
    band: list[list[str]]
    flux: list[list[float | None]]
    fluxerr: list[list[float | None]]
    zp: list[float]
    redshift: list[float]
    sncode: list[int]
    hostgal_mag_u: list[float | None] | None = None
    hostgal_mag_g: list[float | None] | None = None
    hostgal_mag_r: list[float | None] | None = None
    hostgal_mag_i: list[float | None] | None = None
    hostgal_mag_z: list[float | None] | None = None
    hostgal_mag_y: list[float | None] | None = None
    hostgal_magerr_u: list[float | None] | None = None
    hostgal_magerr_g: list[float | None] | None = None
    hostgal_magerr_r: list[float | None] | None = None
    hostgal_magerr_i: list[float | None] | None = None
    hostgal_magerr_z: list[float | None] | None = None
    hostgal_magerr_y: list[float | None] | None = None
    hostgal_ellipticity: list[float | None] | None = None
    hostgal_sqradius: list[float | None] | None = None
    hostgal_snsep: list[float | None] | None = None


class LightCurvesResponse(Ok):
    diaobject: list[LightCurve] | list[FlatLightCurve] | LightCurveColumns = Field(
        description="by return_format: 0, 1 or 2; objects in ascending object id"
    )


class AskForSpectrumResponse(Ok):
    message: str
    num: int = Field(description="wanted-spectrum entries created or updated")


class Latest(BaseModel):
    mjd: float
    mag: float


class WantedSpectrum(BaseModel):
    oid: int
    ra: float
    dec: float
    req: str
    prio: int
    latest: dict[str, Latest] = Field(
        description="per band, the most recent forced photometry with S/N > 3"
    )


class SpectraWantedResponse(Ok):
    wantedspectra: list[WantedSpectrum]


class PlanSpectrumResponse(Ok):
    objectid: int
    facility: str
    created_at: str
    plantime: str | None
    comment: str


class RemoveSpectrumPlanResponse(Ok):
    facility: str
    objectid: int
    n_deleted: int


class ReportSpectrumInfoResponse(Ok):
    objectid: int
    facility: str
    inserted_at: str
    mjd: float
    z: float | None
    classid: int | None


class KnownSpectrum(BaseModel):
    objectid: int
    facility: str
    mjd: float
    z: float | None
    classid: int | None
    report_time: str


class KnownSpectrumInfoResponse(Ok):
    spectra: list[KnownSpectrum]


class TaxonomyEntry(BaseModel):
    exactmatch: bool
    categorymatch: bool
    broadmatch: bool
    generalmatch: bool
    description: str
    gentype: list[int]


ClassIdsResponse = RootModel[dict[str, TaxonomyEntry]]


class ClassifierEntry(BaseModel):
    brokername: str
    brokerversion: str
    classifiername: str
    classifierparams: str


ClassifiersResponse = RootModel[dict[str, ClassifierEntry]]
AlertResponse = RootModel[dict[str, Any]]


class BrokerMessageResponse(BaseModel):
    brokerMessageId: int = Field(description="id of the first message stored, -1 if none")
    num_loaded: int

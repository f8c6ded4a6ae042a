"""One decoded alert, of any supported schema, as the rows ingest stores.

ELAsTiCC2 (``elasticc.v0_9_1``) and Rubin (``lsst.v10_0`` / ``lsst.v11_0``) alerts name the
same things differently (``midPointTai`` / ``midpointMjdTai``, ``filterName`` / ``band``,
``psFlux`` / ``psfFlux``, ``decl`` / ``dec``); each gets one small mapping here, and the rest
of ingest sees only :class:`AlertRows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tomstream import avro
from tomstream.avro import DecodedAlert, DecodeError

# Row layouts, in the column order of the tables (see migration 0003).
SOURCE_COLUMNS = (
    "diasource_id",
    "diaobject_id",
    "mjd",
    "band",
    "ra",
    "decl",
    "flux",
    "flux_err",
    "snr",
)
FORCED_COLUMNS = ("diaforcedsource_id", "diaobject_id", "mjd", "band", "flux", "flux_err")
SourceRow = tuple[int, int | None, float, str, float, float, float, float, float | None]
ForcedRow = tuple[int, int, float, str, float, float]


@dataclass(slots=True)
class ObjectRow:
    """An object's values from one alert.

    Not frozen: a frozen dataclass's ``__init__`` costs ~1 µs more per alert, on the hot path.
    """

    diaobject_id: int
    schema_name: str
    ra: float
    decl: float
    redshift: float | None
    redshift_err: float | None
    record: dict[str, Any]  # the decoded diaObject
    alert_mjd: float

    @property
    def properties(self) -> dict[str, Any]:
        """Every field without a column of its own, as JSON values.

        Built only for the rows a batch writes (about half of its alerts' objects: a batch
        keeps each object's latest alert), not during decode: ~10 µs per alert saved.
        """
        return {k: _json_value(v) for k, v in self.record.items() if k not in _OBJECT_COLUMNS}


@dataclass(slots=True)
class AlertRows:
    alert_id: int
    schema_name: str
    diasource_id: int
    diaobject_id: int | None
    mjd: float
    obj: ObjectRow | None
    sources: list[SourceRow]  # the alert's diaSource first, then prvDiaSources
    forced: list[ForcedRow]


@dataclass(frozen=True)
class _Names:
    """Where one schema keeps what ingest needs."""

    alert_id: str
    mjd: str
    band: str
    dec: str
    flux: str
    flux_err: str
    redshift: str | None
    redshift_err: str | None


_ELASTICC = _Names(
    alert_id="alertId",
    mjd="midPointTai",
    band="filterName",
    dec="decl",
    flux="psFlux",
    flux_err="psFluxErr",
    redshift="z_final",
    redshift_err="z_final_err",
)
_RUBIN = _Names(
    alert_id="diaSourceId",
    mjd="midpointMjdTai",
    band="band",
    dec="dec",
    flux="psfFlux",
    flux_err="psfFluxErr",
    redshift=None,
    redshift_err=None,
)
_NAMES_BY_SCHEMA: Mapping[str, _Names] = {
    avro.ELASTICC_ALERT: _ELASTICC,
    avro.LSST_V10_ALERT: _RUBIN,
    avro.LSST_V11_ALERT: _RUBIN,
}


def alert_rows(decoded: DecodedAlert) -> AlertRows:
    """The rows of one alert; a record that lacks what ingest needs raises DecodeError."""
    names = _NAMES_BY_SCHEMA.get(decoded.schema_name)
    if names is None:
        raise DecodeError(f"ingest does not read {decoded.schema_name} alerts")
    record = decoded.record
    try:
        return _rows(decoded.schema_name, names, record)
    except (KeyError, TypeError) as error:
        raise DecodeError(f"{decoded.schema_name} alert lacks {error}") from error


def _rows(schema_name: str, n: _Names, record: dict[str, Any]) -> AlertRows:
    source = record["diaSource"]
    mjd = source[n.mjd]
    detections = [source, *(record.get("prvDiaSources") or [])]
    sources: list[SourceRow] = [
        (
            s["diaSourceId"],
            s.get("diaObjectId"),
            s[n.mjd],
            s[n.band],
            s["ra"],
            s[n.dec],
            s[n.flux],
            s[n.flux_err],
            s.get("snr"),
        )
        for s in detections
    ]
    forced: list[ForcedRow] = [
        (f["diaForcedSourceId"], f["diaObjectId"], f[n.mjd], f[n.band], f[n.flux], f[n.flux_err])
        for f in record.get("prvDiaForcedSources") or []
    ]
    obj = record.get("diaObject")
    object_row = _object_row(schema_name, n, obj, mjd) if obj else None
    return AlertRows(
        alert_id=record[n.alert_id],
        schema_name=schema_name,
        diasource_id=source["diaSourceId"],
        diaobject_id=obj["diaObjectId"] if obj else source.get("diaObjectId"),
        mjd=mjd,
        obj=object_row,
        sources=sources,
        forced=forced,
    )


_OBJECT_COLUMNS = {"diaObjectId", "ra", "decl", "dec", "z_final", "z_final_err"}


def _object_row(schema_name: str, n: _Names, obj: dict[str, Any], mjd: float) -> ObjectRow:
    def optional(name: str | None) -> float | None:
        return _finite(obj.get(name)) if name else None

    return ObjectRow(
        diaobject_id=obj["diaObjectId"],
        schema_name=schema_name,
        ra=obj["ra"],
        decl=obj[n.dec],
        redshift=optional(n.redshift),
        redshift_err=optional(n.redshift_err),
        record=obj,
        alert_mjd=mjd,
    )


def _finite(value: Any) -> Any:
    """JSON and our float columns have no NaN / infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_JSON_CONVERTERS: dict[type, Callable[[Any], Any]] = {bytes: lambda v: v.hex()}


def _json_value(value: Any) -> Any:
    convert = _JSON_CONVERTERS.get(type(value))
    return convert(value) if convert else _finite(value)

"""Modified Julian Dates (UTC; the TAI-UTC offset of 37 s does not matter at these scales)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_UNIX_EPOCH_MJD = 40587.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mjd_of(moment: datetime) -> float:
    return _UNIX_EPOCH_MJD + (moment - _EPOCH).total_seconds() / 86400.0


def datetime_of(mjd: float) -> datetime:
    return _EPOCH + timedelta(days=mjd - _UNIX_EPOCH_MJD)


def now_mjd() -> float:
    return mjd_of(datetime.now(UTC))

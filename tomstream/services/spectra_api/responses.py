"""JSON responses encoded with orjson: light curves of thousands of objects are megabytes of
numbers, which the standard library encodes several times slower."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import JSONResponse


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        # NaN and infinity (possible in stored fluxes) become null: JSON has no such numbers.
        # Light curves are numpy arrays: orjson writes them without a Python float per point.
        return orjson.dumps(content, default=_bytes_as_base64, option=orjson.OPT_SERIALIZE_NUMPY)


def _bytes_as_base64(value: Any) -> str:
    # Only raw alerts hold bytes (Rubin cutouts): JSON carries them as base64 text.
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def desc_time(value: datetime | None) -> str | None:
    """A timestamp as the DESC TOM's Django encoder wrote it: ISO 8601, milliseconds, UTC 'Z'.

    (astropy's ``Time`` reads this form; it does not read a ``+00:00`` suffix.)
    """
    if value is None:
        return None
    utc = value.astimezone(UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"

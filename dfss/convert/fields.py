"""Reading the fields of annotation files: numbers, with errors naming the file and the field."""

from __future__ import annotations

import math

from dfss.data.errors import DataError


def parse_float(text: str | None, what: str, where: str) -> float:
    """A finite number, or an error naming ``where`` and ``what``."""
    try:
        value = float((text or "").strip())
    except ValueError:
        raise DataError(f"{where}: {what} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {what} is {text!r}, not a finite number")
    return value

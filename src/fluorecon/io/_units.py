"""Conversion of length and time units found in image metadata to micrometres and seconds."""

from __future__ import annotations

_LENGTH_TO_UM: dict[str, float] = {
    "pm": 1e-6, "picometer": 1e-6, "picometre": 1e-6,
    "å": 1e-4, "Å": 1e-4, "angstrom": 1e-4,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "\\u00b5m": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "inch": 25400.0, "in": 25400.0,
}

_TIME_TO_S: dict[str, float] = {
    "ns": 1e-9, "nanosecond": 1e-9,
    "µs": 1e-6, "μs": 1e-6, "us": 1e-6, "microsecond": 1e-6,
    "ms": 1e-3, "millisecond": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}

#: NGFF (OME-Zarr) unit names written by fluorecon.
NGFF_LENGTH_UNIT = "micrometer"
NGFF_TIME_UNIT = "second"


def length_to_um(value: float, unit: str | None) -> float | None:
    """Return ``value`` in ``unit`` as micrometres, or ``None`` if unknown or invalid.

    ``unit=None`` and ``"pixel"`` mean "no physical unit" and give ``None``; so does a
    value that is not a finite positive number.

    Examples
    --------
    >>> length_to_um(130.0, "nm")
    0.13
    """
    return _convert(value, unit, _LENGTH_TO_UM)


def time_to_s(value: float, unit: str | None) -> float | None:
    """Return ``value`` in ``unit`` as seconds, or ``None`` if unknown or not positive."""
    return _convert(value, unit, _TIME_TO_S)


def _convert(value: float, unit: str | None, table: dict[str, float]) -> float | None:
    """``value`` times the factor of ``unit`` in ``table``; None if unknown, invalid or <= 0."""
    if unit is None:
        return None
    factor = table.get(unit.strip()) or table.get(unit.strip().lower())
    if factor is None:
        return None
    try:
        out = float(value) * factor
    except (TypeError, ValueError):
        return None
    if not (out > 0 and out < float("inf")):
        return None
    return out

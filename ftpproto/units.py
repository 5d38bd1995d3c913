"""Byte counts as people write and read them: ``10G`` in, ``12.0 MiB`` out.

Shared by the server (quotas in ``users.yaml``, error texts) and the client
(listings, progress).  Units are binary: K = 1024 bytes.
"""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_quantity"]

_UNITS = "KMGTPE"
_QUANTITY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)(?:i?B)?\s*\Z", re.IGNORECASE)


def parse_quantity(value: int | str) -> int:
    """Bytes for ``value``: an integer, or a number with K/M/G/T/P/E (``"1.5G"``, ``"500MiB"``).

    Raises ValueError for anything else, including negative numbers.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    match = _QUANTITY.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (write e.g. 500M, 10G or a number of bytes)")
    number, unit = match.groups()
    if "." in number and not unit:
        raise ValueError(f"not a whole number of bytes: {value!r}")
    scale = 1024 ** (_UNITS.index(unit.upper()) + 1) if unit else 1
    return int(float(number) * scale) if "." in number else int(number) * scale


def format_size(size: int) -> str:
    """``532 B``, ``12.0 KiB``, ``3.1 MiB``, ... with one decimal from KiB up."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if round(value, 1) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}iB"
    raise AssertionError("unreachable")

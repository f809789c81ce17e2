"""Sizes as people write them (``256MiB``, ``1.5GB``): one parser for the command line, job
files and the readers' options."""

from __future__ import annotations

import re
from decimal import Decimal

from reacture_convert.errors import ConfigError

__all__ = ["parse_size"]

_SIZE = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))(b|kb|mb|gb|kib|mib|gib)?")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_size(value: int | str) -> int:
    """``256MiB``, ``500MB``, ``1.5GB``, ``64kib``, ``1000000`` (bytes) -> bytes.

    ConfigError for anything else, and for less than 1 byte."""
    expected = f"{value!r} is not a size like 256MiB, 500MB or 1000000"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(expected)
    if isinstance(value, int):
        n = value
    else:
        match = _SIZE.fullmatch(value.strip().lower().replace(" ", ""))
        if match is None:
            raise ConfigError(expected)
        n = int(Decimal(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])  # exact
    if n < 1:
        raise ConfigError(f"{value!r} is too small: a size must be at least 1 byte")
    return n

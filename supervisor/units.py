"""Parsing of the human units users type: sizes, CPU counts, durations."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from supervisor.errors import InvalidArgument

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}


def parse_size(text: str | int, *, field: str = "size") -> int:
    """Bytes from `32m`, `1g`, `64MiB`, `512k`, `1024` (binary units, as Docker's RAMInBytes)."""
    if isinstance(text, int):
        if text < 0:
            raise InvalidArgument(f"invalid {field}: {text}: must not be negative")
        return text
    match = _SIZE.match(text)
    if not match:
        raise InvalidArgument(
            f"invalid {field}: {text!r}: expected a number with an optional unit (b, k, m, g, t, p), e.g. 64m"
        )
    number, unit, _ = match.groups()
    value = Decimal(number) * (1 << _SIZE_SHIFT[unit.lower()])
    return int(value)


def parse_cpus(text: str | float, *, field: str = "cpus") -> int:
    """Nano-CPUs (1e9 = one CPU) from `0.5`, `2`, as Docker's `--cpus`."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidArgument(f"invalid {field}: {text!r}: expected a number of CPUs, e.g. 0.5") from None
    if value < 0:
        raise InvalidArgument(f"invalid {field}: {text!r}: must not be negative")
    nano = value * Decimal(1_000_000_000)
    if nano != nano.to_integral_value():
        raise InvalidArgument(f"invalid {field}: {text!r}: too precise")
    return int(nano)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SCALE = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(text: str | int | float, *, field: str = "duration") -> float:
    """Seconds from `500ms`, `1m30s`, `2h`, or a bare number of seconds."""
    if isinstance(text, (int, float)):
        if text < 0:
            raise InvalidArgument(f"invalid {field}: {text}: must not be negative")
        return float(text)
    stripped = text.strip()
    try:
        return float(Decimal(stripped))
    except InvalidOperation:
        pass
    pos = 0
    total = Decimal(0)
    for match in _DURATION_PART.finditer(stripped):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _DURATION_SCALE[match.group(2)]
        pos = match.end()
    if pos != len(stripped) or not stripped:
        raise InvalidArgument(f"invalid {field}: {text!r}: expected a duration such as 500ms, 10s or 1m30s")
    return float(total)

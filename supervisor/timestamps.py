"""RFC 3339 timestamps with nanoseconds, as the Docker API and json-file logs use them."""

from __future__ import annotations

import calendar
import re
import time

ZERO_TIME = "0001-01-01T00:00:00Z"

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def rfc3339_nano(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch, or None for Docker's zero time or junk."""
    match = _RFC3339.match(text)
    if not match or text == ZERO_TIME:
        return None
    base, fraction, zone = match.groups()
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        seconds -= sign * (hours * 3600 + minutes * 60)
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))

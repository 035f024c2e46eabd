"""v2 io controller: bytes read and written per device, from io.stat."""

from __future__ import annotations

from supervisor.isolation.cgroups.interface import IoBytes

STAT = "io.stat"


def service_bytes(text: str) -> tuple[IoBytes, ...]:
    """rbytes and wbytes of each io.stat line ("8:0 rbytes=4096 wbytes=0 rios=1 ...") (pure)."""
    found: list[IoBytes] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        device, *pairs = fields
        major, _, minor = device.partition(":")
        counters = dict(pair.partition("=")[::2] for pair in pairs)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if key in counters:
                found.append(IoBytes(int(major), int(minor), op, int(counters[key])))
    return tuple(found)

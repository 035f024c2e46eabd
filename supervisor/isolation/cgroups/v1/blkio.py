"""v1 blkio controller: bytes read and written per device (nothing is limited through it)."""

from __future__ import annotations

from supervisor.isolation.cgroups.interface import IoBytes

SERVICE_BYTES = "blkio.throttle.io_service_bytes_recursive"


def service_bytes(text: str) -> tuple[IoBytes, ...]:
    """The Read and Write lines of blkio.throttle.io_service_bytes_recursive ("8:0 Read 4096") (pure)."""
    found: list[IoBytes] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0] or fields[1] not in ("Read", "Write"):
            continue
        major, _, minor = fields[0].partition(":")
        found.append(IoBytes(int(major), int(minor), fields[1].lower(), int(fields[2])))
    return tuple(found)

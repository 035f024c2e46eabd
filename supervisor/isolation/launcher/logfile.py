"""A container's log file in Docker's json-file shape, written by the launcher.

One JSON object per line: {"log": text, "stream": "stdout"|"stderr",
"time": RFC 3339 with nanoseconds}. Each output chunk is split at
newlines so a record is one line (or the unfinished tail of one, written
at once rather than held back, so prompts show and nothing waits in
memory if the launcher dies). Concatenating the `log` fields of a stream
gives back its bytes (decoded as UTF-8, invalid bytes replaced).
"""

from __future__ import annotations

import json
import os
import time

from supervisor.timestamps import rfc3339_nano


def encode_records(stream: str, chunk: bytes, now_ns: int) -> bytes:
    stamp = rfc3339_nano(now_ns)
    lines = chunk.splitlines(keepends=True)
    out = []
    for line in lines:
        record = {"log": line.decode("utf-8", errors="replace"), "stream": stream, "time": stamp}
        out.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode() if out else b""


class LogFile:
    """Appends records; O_APPEND so readers and rotation (later) see whole lines."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, chunk: bytes) -> None:
        data = encode_records(stream, chunk, time.time_ns())
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

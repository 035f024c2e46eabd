"""The launcher's log: JSON lines in the same shape as structlog's (event, level, timestamp).

The launcher deliberately does not import structlog: every container is a
fork of the launcher, and fork and the exec after it cost more the larger
the process is. structlog (with the asyncio it imports) doubles the
launcher's memory, and measured here that took clone-to-exec from 1.0 ms
to 2.3 ms. The output is what structlog's JSONRenderer writes, so the
daemon's and the launcher's logs read alike.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any, TextIO


class Journal:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000 // 1000:06d}Z"
        record = {**fields, "event": event, "level": level, "timestamp": stamp}
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._write("error", event, {**fields, "exception": traceback.format_exc()})


log = Journal()

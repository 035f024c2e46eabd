"""Terminal output the way the docker CLI lays it out: tables, sizes, ages."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from supervisor.humanize import human_duration


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO = sys.stdout) -> None:
    """Columns padded by three spaces, as Go's tabwriter does for `docker ps`."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    for row in [list(headers), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        out.write("   ".join([*cells, row[-1]]).rstrip() + "\n")


def human_ago(unix_seconds: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return f"{human_duration(now - unix_seconds)} ago"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

"""Where a config value came from and what was wrong with it.

Every message a user sees from the config layer is a `ConfigError`
rendered as `path:line: key.path: message`, the shape compilers use, so
editors and terminals can jump to the spot.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A key path into the TOML document: table keys and array indices,
# ("containers", "web", "mounts", 1, "source").
Key = tuple[str | int, ...]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def render_key(key: Key) -> str:
    """`containers.web.mounts[1].source`; keys that are not bare TOML keys are quoted."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


def describe(value: Any) -> str:
    """A value as the user wrote it in TOML, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return f"a date/time ({value.isoformat()})"
    return repr(value)


@dataclass(frozen=True)
class Source:
    """The file and line of a container's table, for messages and `corral status`."""

    path: Path
    line: int


@dataclass(frozen=True)
class ConfigError:
    """One problem in one file. `line` is None only when the file could not be read at all."""

    path: Path
    line: int | None
    key: Key
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        if self.key:
            return f"{where}: {render_key(self.key)}: {self.message}"
        return f"{where}: {self.message}"

"""Typed reading of TOML tables, collecting every problem instead of stopping at the first.

A `Section` wraps one table of the parsed document with its key path.
Its getters return the value converted to the model's type, or — after
recording an error — a harmless default, so one pass over a file reports
all its mistakes at once. Whoever reads a file discards its result when
`errors` is not empty, so those defaults never reach the engine.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from supervisor.errors import InvalidArgument
from supervisor.reactor.config.diagnostics import ConfigError, Key, describe, render_key
from supervisor.units import parse_duration, parse_size

T = TypeVar("T")

DURATION_HINT = 'a duration like "500ms", "1m30s" or a number of seconds'
SIZE_HINT = 'a size like "64MiB"'

# Names users bring from Docker, Compose or systemd, to point them at ours.
_ALIASES = {
    "environment": "env",
    "env_files": "env_file",
    "working_dir": "workdir",
    "workingdir": "workdir",
    "cmd": "command",
    "args": "command",
    "volumes": "mounts",
    "healthcheck": "health",
    "test": "command",
    "restart_policy": "restart",
    "policy_name": "policy",
    "mem_limit": "memory",
    "pids_limit": "pids",
    "max_file": "max_files",
    "max-size": "max_size",
    "max-file": "max_files",
    "start_interval": "interval",
}


class Problems:
    """The errors found in one file so far, each placed on its line."""

    def __init__(self, path: Path, line_of: Callable[[Key], int]) -> None:
        self.path = path
        self.line_of = line_of
        self.errors: list[ConfigError] = []

    def add(self, key: Key, message: str) -> None:
        self.errors.append(ConfigError(self.path, self.line_of(key), key, message))


def suggest(name: str, allowed: Iterable[str]) -> str:
    """`unknown key (did you mean "policy"?)`, or the list of keys allowed here."""
    options = sorted(allowed)
    alias = _ALIASES.get(name.lower())
    if alias in options:
        return f'unknown key (did you mean "{alias}"?)'
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.7)
    if close:
        return f'unknown key (did you mean "{close[0]}"?)'
    return "unknown key (expected one of: " + ", ".join(options) + ")"


class Section:
    """One table: its key path, its values, and the keys allowed in it."""

    def __init__(self, problems: Problems, key: Key, data: dict[str, Any], allowed: Sequence[str]) -> None:
        self.problems = problems
        self.key = key
        self.data = data
        # Reported up front, so a typo shows up even next to other errors.
        for name in data:
            if name not in allowed:
                problems.add(key + (name,), suggest(name, allowed))

    def has(self, name: str) -> bool:
        return name in self.data

    def error(self, name: str | int, message: str) -> None:
        self.problems.add(self.key + (name,), message)

    def error_at(self, relative: Key, message: str) -> None:
        self.problems.add(self.key + relative, message)

    def expected(self, name: str, what: str) -> None:
        self.error(name, f"expected {what}, got {describe(self.data[name])}")

    def table(self, name: str, allowed: Sequence[str]) -> Section | None:
        """The sub-table `name`, or None when absent or not a table (reported)."""
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, dict):
            self.expected(name, f"a table ([{render_key(self.key + (name,))}])")
            return None
        return Section(self.problems, self.key + (name,), value, allowed)

    def string(self, name: str, default: str = "", *, required: bool = False) -> str:
        if name not in self.data:
            if required:
                self.problems.add(self.key, f'missing required key "{name}"')
            return default
        value = self.data[name]
        if not isinstance(value, str):
            self.expected(name, "a string")
            return default
        if "\0" in value:
            self.error(name, "must not contain a NUL character")
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        if name not in self.data:
            return default
        value = self.data[name]
        # bool is an int in Python; `retries = true` is still a type error.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.expected(name, f"an integer >= {minimum}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, bool):
            self.expected(name, "true or false")
            return default
        return value

    def duration(self, name: str, default: float) -> float:
        if name not in self.data:
            return default
        value = self.data[name]
        seconds = _convert(value, (str, int, float), lambda v: parse_duration(v, field=name))
        # parse_duration takes "-1" and "nan" as text; neither is a duration.
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            self.expected(name, DURATION_HINT)
            return default
        return seconds

    def size(self, name: str, default: int | None, *, hint: str = SIZE_HINT) -> int | None:
        if name not in self.data:
            return default
        size = _convert(self.data[name], (str, int), lambda v: parse_size(v, field=name))
        if size is None:
            self.expected(name, hint)
            return default
        return size

    def choice(self, name: str, options: Sequence[T], default: T) -> T:
        if name not in self.data:
            return default
        value = self.data[name]
        for option in options:
            if value == option and isinstance(value, str):
                return option
        listed = ", ".join(f'"{o}"' for o in options)
        self.expected(name, f"one of {listed}")
        return default

    def strings(self, name: str) -> tuple[str, ...] | None:
        """An array of strings; None when absent or wrong (reported)."""
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, list):
            self.expected(name, "an array of strings")
            return None
        ok = True
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problems.add(self.key + (name, index), f"expected a string, got {describe(item)}")
                ok = False
            elif "\0" in item:
                self.problems.add(self.key + (name, index), "must not contain a NUL character")
                ok = False
        return tuple(value) if ok else None


def _convert(value: Any, types: tuple[type, ...], parse: Callable[[Any], T]) -> T | None:
    if isinstance(value, bool) or not isinstance(value, types):
        return None
    try:
        return parse(value)
    except InvalidArgument:
        return None

"""Docker's `reference=` filter: Go's path.Match on familiar names (distribution/reference FamiliarMatch).

A pattern matches a reference if it matches its familiar string
(`busybox:latest`, `user/app@sha256:...`) or its familiar name
(`busybox`, `user/app`). As in Go, `*` and `?` never match `/`; `[...]`
classes (with `^` negation and ranges) and `\\` escapes work; a malformed
pattern is an error.
"""

from __future__ import annotations

import re
from functools import lru_cache

from supervisor.errors import InvalidArgument
from supervisor.storage.reference import parse_reference


def familiar_match(pattern: str, reference: str) -> bool:
    """Whether `pattern` matches the familiar reference `reference` or its repository name."""
    regex = _compile(pattern)
    if regex.fullmatch(reference):
        return True
    return bool(regex.fullmatch(parse_reference(reference).familiar))


def check_pattern(pattern: str) -> None:
    """InvalidArgument if `pattern` is not a valid path.Match pattern."""
    _compile(pattern)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            i += 1
            if i >= len(pattern):
                raise _bad(pattern)
            out.append(re.escape(pattern[i]))
        elif char == "[":
            klass, i = _class(pattern, i + 1)
            out.append(klass)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex for the class starting after `[` at `i`, and the index after its `]`."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    while True:
        if i >= len(pattern):
            raise _bad(pattern)
        if pattern[i] == "]" and ranges:
            break
        low, i = _class_char(pattern, i)
        if i < len(pattern) and pattern[i] == "-":
            high, i = _class_char(pattern, i + 1)
            if high < low:
                raise _bad(pattern)
            ranges.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            ranges.append(re.escape(low))
    return f"[{'^' if negated else ''}{''.join(ranges)}]", i + 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise _bad(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise _bad(pattern)
    return pattern[i], i + 1


def _bad(pattern: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference filter {pattern!r}: syntax error in pattern")

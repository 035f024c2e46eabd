"""Cgroup paths: a parent (e.g. "corral" or "/corral/web") and a name below it."""

from __future__ import annotations

import os

from supervisor.errors import InvalidArgument


def parent_parts(parent: str) -> tuple[str, ...]:
    """The components of a cgroup parent, checked; "/a/b/" -> ("a", "b")."""
    parts = tuple(p for p in parent.split("/") if p)
    for part in parts:
        _check_component(part, f"invalid cgroup parent {parent!r}")
    return parts


def child_parts(parent: str, name: str) -> tuple[str, ...]:
    """The components of the cgroup `name` under `parent`, checked."""
    if "/" in name:
        raise InvalidArgument(f"invalid cgroup name {name!r}: must not contain '/'")
    _check_component(name, f"invalid cgroup name {name!r}")
    return parent_parts(parent) + (name,)


def _check_component(part: str, message: str) -> None:
    if part in (".", "..") or "\0" in part or "\n" in part:
        raise InvalidArgument(f"{message}: bad component {part!r}")
    if part == "" or len(part.encode()) > 255:
        raise InvalidArgument(f"{message}: components must be 1 to 255 bytes")


def under(mountpoint: str, parts: tuple[str, ...]) -> str:
    """The directory of the cgroup `parts` in the hierarchy at `mountpoint`."""
    return os.path.join(mountpoint, *parts)


def display(parts: tuple[str, ...]) -> str:
    """The cgroup path as /proc/PID/cgroup shows it: "/corral/abc"."""
    return "/" + "/".join(parts)

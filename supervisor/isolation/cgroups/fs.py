"""Reading and writing cgroup files; creating and removing cgroup dirs."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)

REMOVE_TIMEOUT = 0.5  # seconds of EBUSY retries, shared by all dirs of one removal
REMOVE_FIRST_DELAY = 0.002


def read_text(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def read_or(path: str, default: str) -> str:
    """The file's text, or `default` when it is not there (a controller the host does not have)."""
    try:
        return read_text(path)
    except FileNotFoundError:
        return default


def parse_max(text: str) -> int | None:
    """A v2-style limit file ("max" or a number; pids.max in v1 too) as a limit, None for "max" (pure)."""
    value = text.strip()
    return None if value in ("max", "") else int(value)


def read_int(path: str) -> int:
    """An integer file; "max" reads as -1."""
    text = read_text(path).strip()
    return -1 if text == "max" else int(text)


def write_text(path: str, value: str) -> None:
    """One write(2) of `value`, as the kernel's cgroup files expect."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def parse_keyed(text: str) -> dict[str, int]:
    """ "key value" lines (cpu.stat, memory.events, cgroup.events) as a dict (pure)."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key and value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def read_keyed(path: str) -> dict[str, int]:
    return parse_keyed(read_text(path))


def read_pids(procs_file: str) -> list[int]:
    """The pids in a cgroup.procs file; [] when the cgroup is gone."""
    try:
        text = read_text(procs_file)
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split()]


def read_pids_tree(directory: str) -> list[int]:
    """The pids in the cgroup at `directory` and in every cgroup below it."""
    found: list[int] = []
    for current, _subdirs, _files in os.walk(directory):
        found.extend(read_pids(os.path.join(current, "cgroup.procs")))
    return found


def make_dirs(directory: str, created: list[str]) -> None:
    """mkdir `directory` and missing ancestors, appending each dir made to `created`."""
    missing: list[str] = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        created.append(path)


def remove_dirs(dirs: Iterable[str], *, recursive: bool = True) -> bool:
    """rmdir each of `dirs` (deepest first), retrying EBUSY; False if one stays.

    `recursive` removes the cgroups below each dir first (those a container
    made for itself in its cgroup namespace); without it a dir with
    children is left alone. A missing dir counts as removed. EBUSY right
    after the last process exited is usual (v1 css teardown is
    asynchronous); whatever stays after the retries is logged as
    cgroup.remove_failed.
    """
    given = set(dirs)
    everything: set[str] = set()
    ok = True
    for top in given:
        below = {os.path.join(current, d) for current, subdirs, _ in os.walk(top) for d in subdirs}
        if not recursive and below - given:
            log.warning("cgroup.remove_failed", path=top, error="has child cgroups")
            ok = False
            continue
        everything.add(top)
        everything.update(below)
    deadline = time.monotonic() + REMOVE_TIMEOUT
    for path in sorted(everything, key=lambda p: p.count("/"), reverse=True):
        ok = _rmdir(path, deadline) and ok
    return ok


def _rmdir(path: str, deadline: float) -> bool:
    delay = REMOVE_FIRST_DELAY
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() + delay > deadline:
                log.warning("cgroup.remove_failed", path=path, error=os.strerror(err.errno or 0))
                return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)

"""Writing a file->value map of limits into the right cgroup directories."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

import structlog

from supervisor.isolation.cgroups.fs import write_text
from supervisor.isolation.cgroups.interface import LimitRejected

log = structlog.get_logger(__name__)

# errnos by which the kernel refuses a value (as opposed to our own mistakes)
_REFUSALS = frozenset({errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.ENOSPC})


def controller_of(filename: str) -> str:
    """ "memory.max" -> "memory": cgroup files are named after their controller."""
    return filename.split(".", 1)[0]


def write_limits(
    writes: Iterable[tuple[str, str]],
    dir_for: Callable[[str], str | None],
) -> None:
    """Write each (filename, value) in order into the dir of its controller.

    A controller that is not available, or a file the kernel does not
    offer (memory.memsw.* without swap accounting), is skipped with a
    warning, as Docker discards limits the host cannot apply.
    """
    for filename, value in writes:
        directory = dir_for(controller_of(filename))
        path = os.path.join(directory, filename) if directory else None
        if path is None or not os.path.exists(path):
            log.warning("cgroup.limit_unsupported", file=filename, value=value)
            continue
        try:
            write_text(path, value)
        except OSError as err:
            if err.errno not in _REFUSALS:
                raise
            raise LimitRejected(f"cannot set {filename} to {value}: {os.strerror(err.errno or 0)}") from err
        log.debug("cgroup.limit_set", path=path, value=value)

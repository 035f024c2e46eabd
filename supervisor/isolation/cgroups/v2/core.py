"""v2 core files: cgroup.events, cgroup.kill, cgroup.freeze, subtree_control."""

from __future__ import annotations

import errno
import os
import time

import structlog

from supervisor.isolation.cgroups.fs import read_keyed, read_pids_tree, read_text, write_text
from supervisor.isolation.cgroups.kill import kill_pids

log = structlog.get_logger(__name__)

EVENTS = "cgroup.events"
KILL = "cgroup.kill"
FREEZE = "cgroup.freeze"
PROCS = "cgroup.procs"
CONTROLLERS = "cgroup.controllers"
SUBTREE_CONTROL = "cgroup.subtree_control"
FREEZE_TIMEOUT = 1.0


def populated(directory: str) -> bool:
    return read_keyed(os.path.join(directory, EVENTS)).get("populated", 0) == 1


def can_kill(directory: str) -> bool:
    """cgroup.kill exists (Linux 5.14+) in non-root cgroups."""
    return os.path.exists(os.path.join(directory, KILL))


def kill(directory: str) -> None:
    """SIGKILL every process in the cgroup and its descendants."""
    if can_kill(directory):
        write_text(os.path.join(directory, KILL), "1")
    else:
        kill_frozen(directory)


def kill_frozen(directory: str) -> None:
    """Without cgroup.kill (before 5.14): freeze, SIGKILL each process, thaw."""
    frozen = freeze(directory)
    try:
        kill_pids(read_pids_tree(directory))
    finally:
        write_text(os.path.join(directory, FREEZE), "0")
    if not frozen:
        log.warning("cgroup.freeze_timeout", path=directory)


def freeze(directory: str) -> bool:
    """Freeze the cgroup; True once cgroup.events says frozen (within FREEZE_TIMEOUT)."""
    write_text(os.path.join(directory, FREEZE), "1")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while read_keyed(os.path.join(directory, EVENTS)).get("frozen", 0) != 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def thaw(directory: str) -> None:
    """Let a frozen cgroup run again; a cgroup that is gone needs nothing."""
    try:
        write_text(os.path.join(directory, FREEZE), "0")
    except FileNotFoundError:
        pass


def controllers(directory: str) -> frozenset[str]:
    return frozenset(read_text(os.path.join(directory, CONTROLLERS)).split())


def enable_subtree(directory: str) -> None:
    """Enable every controller `directory` has for its children.

    One write per controller, so one refusal (e.g. cpu with realtime
    tasks about, EBUSY with processes in a non-root `directory`) leaves the
    others on; a refused controller's limits are then reported as
    unsupported when written.
    """
    enabled = frozenset(read_text(os.path.join(directory, SUBTREE_CONTROL)).split())
    for controller in sorted(controllers(directory) - enabled):
        try:
            write_text(os.path.join(directory, SUBTREE_CONTROL), f"+{controller}")
        except OSError as err:
            if err.errno not in (errno.EBUSY, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            log.warning(
                "cgroup.controller_unavailable",
                path=directory,
                controller=controller,
                error=os.strerror(err.errno or 0),
            )

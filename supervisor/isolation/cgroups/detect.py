"""Choosing the cgroup driver for this host at start-up."""

from __future__ import annotations

from supervisor.isolation.cgroups.interface import CgroupDriver
from supervisor.isolation.cgroups.mountinfo import CgroupMounts, read_mounts
from supervisor.isolation.cgroups.v1.driver import V1Driver
from supervisor.isolation.cgroups.v2.driver import V2Driver


class NoCgroups(RuntimeError):
    """No cgroup hierarchy is mounted: the host cannot run containers."""


def detect(mounts: CgroupMounts | None = None) -> CgroupDriver:
    """V1Driver when any controller sits on a v1 hierarchy (v1 or hybrid),
    V2Driver when only cgroup2 is mounted (named v1 hierarchies such as
    name=systemd alone do not make a host v1)."""
    mounts = read_mounts() if mounts is None else mounts
    if mounts.has_v1_controllers:
        return V1Driver(mounts)
    if mounts.unified is not None:
        return V2Driver(mounts.unified)
    raise NoCgroups("no cgroup hierarchy is mounted (see /proc/self/mountinfo)")

"""Resources -> {file: value} for a v2 host (pure); file names carry the controller."""

from __future__ import annotations

from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v2 import cpu, cpuset, memory, pids


def files(resources: Resources) -> dict[str, str]:
    """Every v2 file to write for `resources`, in write order."""
    return cpuset.files(resources) | memory.files(resources) | cpu.files(resources) | pids.files(resources)

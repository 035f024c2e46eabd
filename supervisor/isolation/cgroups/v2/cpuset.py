"""v2 cpuset controller: cpuset.cpus (empty means the parent's CPUs)."""

from __future__ import annotations

from supervisor.isolation.cgroups.resources import Resources

CPUS = "cpuset.cpus"


def files(resources: Resources) -> dict[str, str]:
    """The cpuset files for `resources` (pure)."""
    if not resources.cpuset_cpus:
        return {}
    return {CPUS: resources.cpuset_cpus}

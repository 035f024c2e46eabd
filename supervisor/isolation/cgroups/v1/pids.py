"""v1 pids controller: pids.max."""

from __future__ import annotations

from supervisor.isolation.cgroups.resources import Resources

MAX = "pids.max"
CURRENT = "pids.current"


def files(resources: Resources) -> dict[str, str]:
    """pids.max for `resources` (pure): a count, or "max" for <= 0."""
    if resources.pids_limit is None:
        return {}
    return {MAX: str(resources.pids_limit) if resources.pids_limit > 0 else "max"}

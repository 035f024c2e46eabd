"""Resources -> {file: value} for a v1 host (pure); file names carry the controller."""

from __future__ import annotations

from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v1 import cpu, cpuset, memory, pids


def files(resources: Resources) -> dict[str, str]:
    """Every v1 file to write for `resources` (memory in no safe order yet: see ordered_writes)."""
    return cpuset.files(resources) | memory.files(resources) | cpu.files(resources) | pids.files(resources)


def ordered_writes(resources: Resources, current_limit: int) -> list[tuple[str, str]]:
    """files(resources) as (file, value) in a safe write order (pure)."""
    all_files = files(resources)
    memory_files = {k: v for k, v in all_files.items() if k in (memory.LIMIT, memory.MEMSW)}
    others = [(k, v) for k, v in all_files.items() if k not in memory_files]
    return memory.write_order(memory_files, current_limit) + others

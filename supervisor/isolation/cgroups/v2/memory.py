"""v2 memory controller: memory.max and memory.swap.max."""

from __future__ import annotations

from supervisor.isolation.cgroups.fs import parse_keyed
from supervisor.isolation.cgroups.resources import UNLIMITED, Resources

MAX = "memory.max"
SWAP_MAX = "memory.swap.max"
CURRENT = "memory.current"
STAT = "memory.stat"
EVENTS = "memory.events"


def files(resources: Resources) -> dict[str, str]:
    """The memory files for `resources` (pure).

    v2 limits swap alone: memory.swap.max is Docker's memory_swap minus
    memory. The two are independent, so any write order works.
    """
    out: dict[str, str] = {}
    memory = resources.memory if resources.memory and resources.memory > 0 else None
    total = resources.effective_memory_swap()
    if total == UNLIMITED:
        out[SWAP_MAX] = "max"
    elif total is not None and memory is not None:
        out[SWAP_MAX] = str(total - memory)
    if memory is not None:
        out[MAX] = str(memory)
    return out


def oom_kills(memory_events_text: str) -> int:
    """The `oom_kill` count in memory.events (pure)."""
    return parse_keyed(memory_events_text).get("oom_kill", 0)

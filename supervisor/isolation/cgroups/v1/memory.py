"""v1 memory controller: memory.limit_in_bytes and memory.memsw.limit_in_bytes."""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.isolation.cgroups.fs import parse_keyed
from supervisor.isolation.cgroups.resources import Resources

LIMIT = "memory.limit_in_bytes"
MEMSW = "memory.memsw.limit_in_bytes"
USAGE = "memory.usage_in_bytes"
MAX_USAGE = "memory.max_usage_in_bytes"
FAILCNT = "memory.failcnt"
STAT = "memory.stat"
# What memory.limit_in_bytes reads when no limit is set (the page counter's maximum, page aligned).
_NO_LIMIT_FROM = 1 << 62
OOM_CONTROL = "memory.oom_control"


def files(resources: Resources) -> dict[str, str]:
    """The memory files to write for `resources` (pure); -1 is unlimited."""
    out: dict[str, str] = {}
    if resources.memory and resources.memory > 0:
        out[LIMIT] = str(resources.memory)
    swap = resources.effective_memory_swap()
    if swap is not None:
        out[MEMSW] = str(swap)
    return out


def write_order(files: Mapping[str, str], current_limit: int) -> list[tuple[str, str]]:
    """The memory writes in an order the kernel accepts (pure).

    The kernel keeps memsw >= limit at every step: when the new memsw is
    above the current limit (raising), memsw goes first; otherwise
    (lowering) the limit goes first. Same rule as runc.
    """
    writes = [(name, value) for name, value in files.items() if name in (LIMIT, MEMSW)]
    if MEMSW not in files or LIMIT not in files:
        return writes
    new_swap = int(files[MEMSW])
    swap_first = new_swap == -1 or current_limit < new_swap
    order = (MEMSW, LIMIT) if swap_first else (LIMIT, MEMSW)
    return [(name, files[name]) for name in order]


def oom_kills(oom_control_text: str) -> int:
    """The `oom_kill` count in memory.oom_control (pure); 0 on kernels without it."""
    return parse_keyed(oom_control_text).get("oom_kill", 0)


def limit_of(limit_text: str) -> int | None:
    """memory.limit_in_bytes as a limit, None when none is set (pure)."""
    value = int(limit_text)
    return None if value >= _NO_LIMIT_FROM else value

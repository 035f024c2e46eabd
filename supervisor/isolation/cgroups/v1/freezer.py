"""v1 freezer controller: stop every task of a cgroup, and let them go again."""

from __future__ import annotations

import os
import time

from supervisor.isolation.cgroups.fs import read_text, write_text

STATE = "freezer.state"
FREEZE_TIMEOUT = 1.0


def freeze(directory: str) -> bool:
    """Freeze the cgroup; True once the kernel reports FROZEN (within FREEZE_TIMEOUT)."""
    path = os.path.join(directory, STATE)
    write_text(path, "FROZEN")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while read_text(path).strip() != "FROZEN":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
        write_text(path, "FROZEN")  # kicks another freezing pass, as runc does
    return True


def thaw(directory: str) -> None:
    write_text(os.path.join(directory, STATE), "THAWED")

"""v1 cpuset controller: cpuset.cpus, and the cpus/mems a new cpuset inherits."""

from __future__ import annotations

import os

from supervisor.isolation.cgroups.fs import read_text, write_text
from supervisor.isolation.cgroups.resources import Resources

CPUS = "cpuset.cpus"
MEMS = "cpuset.mems"


def files(resources: Resources) -> dict[str, str]:
    """The cpuset files to write for `resources` (pure)."""
    if not resources.cpuset_cpus:
        return {}
    return {CPUS: resources.cpuset_cpus}


def inherit(root: str, directory: str) -> None:
    """Fill empty cpuset.cpus/mems from the parent, from `root` down to `directory`.

    A v1 cpuset starts with no CPUs and no memory nodes (unless the parent
    has cgroup.clone_children set), and no process can join it then.
    """
    relative = os.path.relpath(directory, root)
    if relative == ".":
        return
    parent = root
    for part in relative.split(os.sep):
        current = os.path.join(parent, part)
        for name in (CPUS, MEMS):
            if not read_text(os.path.join(current, name)).strip():
                write_text(os.path.join(current, name), read_text(os.path.join(parent, name)).strip())
        parent = current

"""The driver for pure v2 hosts (/sys/fs/cgroup is cgroup2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import structlog

from supervisor.isolation.cgroups.fs import make_dirs, remove_dirs
from supervisor.isolation.cgroups.paths import child_parts, parent_parts, under
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v2 import core
from supervisor.isolation.cgroups.v2.cgroup import V2Cgroup

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class V2Driver:
    root: str  # the cgroup2 mountpoint

    @property
    def version(self) -> Literal["2"]:
        return "2"

    @property
    def name(self) -> str:
        return "cgroupfs"

    def create(self, parent: str, name: str, resources: Resources) -> V2Cgroup:
        parts = child_parts(parent, name)
        cgroup = V2Cgroup(parts, under(self.root, parts))
        created: list[str] = []
        try:
            make_dirs(cgroup.directory, created)
            # Controllers reach a cgroup only through every ancestor's
            # subtree_control; the container's own stays empty (a cgroup
            # with processes cannot hand controllers down).
            for depth in range(len(parts)):
                core.enable_subtree(under(self.root, parts[:depth]))
            cgroup.update(resources)
        except BaseException:
            remove_dirs(created, recursive=False)
            raise
        log.info("cgroup.created", path=cgroup.path, version="2", dirs=len(created))
        return cgroup

    def open(self, parent: str, name: str) -> V2Cgroup:
        parts = child_parts(parent, name)
        cgroup = V2Cgroup(parts, under(self.root, parts))
        if not os.path.isdir(cgroup.directory):
            raise FileNotFoundError(f"cgroup {cgroup.path} does not exist")
        return cgroup

    def children(self, parent: str) -> list[str]:
        directory = under(self.root, parent_parts(parent))
        if not os.path.isdir(directory):
            return []
        return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())

    def remove_parent(self, parent: str) -> bool:
        parts = parent_parts(parent)
        if not parts:
            return True
        return remove_dirs([under(self.root, parts)], recursive=False)

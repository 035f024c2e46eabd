"""The driver for hosts whose controllers are on v1 hierarchies (v1 or hybrid)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import structlog

from supervisor.isolation.cgroups.fs import make_dirs, remove_dirs
from supervisor.isolation.cgroups.mountinfo import CgroupMounts
from supervisor.isolation.cgroups.paths import child_parts, parent_parts, under
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v1 import cpuset
from supervisor.isolation.cgroups.v1.cgroup import V1Cgroup

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class V1Driver:
    mounts: CgroupMounts

    @property
    def version(self) -> Literal["1"]:
        return "1"

    @property
    def name(self) -> str:
        return "cgroupfs"

    def create(self, parent: str, name: str, resources: Resources) -> V1Cgroup:
        cgroup = V1Cgroup(child_parts(parent, name), self.mounts)
        created: list[str] = []
        try:
            for directory in cgroup.paths.values():
                make_dirs(directory, created)
            cpuset_root = self.mounts.v1_dir("cpuset")
            if cpuset_root is not None:
                cpuset.inherit(cpuset_root, under(cpuset_root, cgroup.parts))
            cgroup.update(resources)
        except BaseException:
            remove_dirs(created, recursive=False)
            raise
        log.info("cgroup.created", path=cgroup.path, version="1", dirs=len(created))
        return cgroup

    def open(self, parent: str, name: str) -> V1Cgroup:
        cgroup = V1Cgroup(child_parts(parent, name), self.mounts)
        if not any(os.path.isdir(d) for d in cgroup.paths.values()):
            raise FileNotFoundError(f"cgroup {cgroup.path} does not exist")
        return cgroup

    def children(self, parent: str) -> list[str]:
        parts = parent_parts(parent)
        dirs = [under(h.mountpoint, parts) for h in self.mounts.v1]
        if self.mounts.unified is not None:
            dirs.append(under(self.mounts.unified, parts))
        return sorted({entry.name for d in dirs if os.path.isdir(d) for entry in os.scandir(d) if entry.is_dir()})

    def remove_parent(self, parent: str) -> bool:
        parts = parent_parts(parent)
        if not parts:
            return True
        dirs = [under(h.mountpoint, parts) for h in self.mounts.v1]
        if self.mounts.unified is not None:
            dirs.append(under(self.mounts.unified, parts))
        return remove_dirs(dirs, recursive=False)

"""Where the cgroup hierarchies are mounted, from /proc/self/mountinfo."""

from __future__ import annotations

import re
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"

# Controllers a v1 hierarchy can carry; every other super option (rw,
# xattr, clone_children, release_agent=...) is a mount option.
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class V1Hierarchy:
    """One mounted v1 hierarchy: its controllers, or a name (name=systemd)."""

    mountpoint: str
    controllers: frozenset[str]
    name: str | None = None

    @property
    def key(self) -> str:
        """A stable label: "cpu,cpuacct", "memory", "name=systemd"."""
        if self.name is not None and not self.controllers:
            return f"name={self.name}"
        return ",".join(sorted(self.controllers))


@dataclass(frozen=True)
class CgroupMounts:
    """The cgroup hierarchies of this mount namespace."""

    v1: tuple[V1Hierarchy, ...]
    unified: str | None

    @property
    def has_v1_controllers(self) -> bool:
        return any(h.controllers for h in self.v1)

    def v1_dir(self, controller: str) -> str | None:
        """The mountpoint of the v1 hierarchy that carries `controller`."""
        for hierarchy in self.v1:
            if controller in hierarchy.controllers:
                return hierarchy.mountpoint
        return None


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> CgroupMounts:
    """The cgroup mounts in the text of a mountinfo file (pure).

    A hierarchy mounted more than once (bind mounts) is listed once,
    preferring a mount of its root.
    """
    v1: dict[str, tuple[bool, V1Hierarchy]] = {}
    unified: tuple[bool, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        before, after = left.split(), right.split()
        if len(before) < 5 or len(after) < 3:
            continue
        root, mountpoint = _unescape(before[3]), _unescape(before[4])
        fstype, super_options = after[0], after[2].split(",")
        is_root = root == "/"
        if fstype == "cgroup2":
            if unified is None or (is_root and not unified[0]):
                unified = (is_root, mountpoint)
        elif fstype == "cgroup":
            controllers = frozenset(o for o in super_options if o in V1_CONTROLLERS)
            names = [o.removeprefix("name=") for o in super_options if o.startswith("name=")]
            hierarchy = V1Hierarchy(mountpoint, controllers, names[0] if names else None)
            seen = v1.get(hierarchy.key)
            if seen is None or (is_root and not seen[0]):
                v1[hierarchy.key] = (is_root, hierarchy)
    ordered = sorted((h for _, h in v1.values()), key=lambda h: h.mountpoint)
    return CgroupMounts(v1=tuple(ordered), unified=unified[1] if unified else None)


def read_mounts(path: str = MOUNTINFO) -> CgroupMounts:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())

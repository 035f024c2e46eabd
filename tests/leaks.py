"""Kernel objects the suite could leak, read straight from /proc and /sys.

A snapshot is a set of strings per kind; what a later snapshot has that an
earlier one lacked is a leak.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
TEST_MARK = "corral-t"


@dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[str]
    cgroups: frozenset[str]
    processes: frozenset[str]
    netns: frozenset[str]

    def new_since(self, earlier: Snapshot) -> dict[str, list[str]]:
        leaks = {}
        for kind in ("mounts", "cgroups", "processes", "netns"):
            extra = sorted(getattr(self, kind) - getattr(earlier, kind))
            if extra:
                leaks[kind] = extra
        return leaks


def _mounts() -> frozenset[str]:
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if TEST_MARK in line or "overlay" in fields[fields.index("-") + 1]:
            found.add(f"{fields[4]} ({fields[fields.index('-') + 1]})")
    return frozenset(found)


def _cgroups() -> frozenset[str]:
    found = set()
    if not CGROUP_ROOT.exists():
        return frozenset()
    for hierarchy in CGROUP_ROOT.iterdir():
        try:
            for entry in hierarchy.iterdir():
                if entry.is_dir() and entry.name.startswith(TEST_MARK):
                    found.add(str(entry))
        except OSError:
            continue
    return frozenset(found)


def _processes() -> frozenset[str]:
    """Processes in a test cgroup or started with a test path on their command line."""
    found = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (entry / "cgroup").read_text()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z" and TEST_MARK not in cgroup:
            continue
        if TEST_MARK in cgroup or TEST_MARK in cmdline:
            found.add(f"{entry.name} {cmdline.strip()[:120]}")
    return frozenset(found)


def _netns() -> frozenset[str]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.add(os.readlink(entry / "ns" / "net"))
            except OSError:
                continue
    named = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    found.update(f"named:{n}" for n in named if n and not n.startswith("("))
    return frozenset(found)


def snapshot() -> Snapshot:
    return Snapshot(mounts=_mounts(), cgroups=_cgroups(), processes=_processes(), netns=_netns())

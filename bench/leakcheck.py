"""After the bench: is anything it started still there?

Processes, mounts, cgroup dirs named corral-bench*, network namespaces
and veth links, and the temporary dirs themselves. Network objects are
compared with a snapshot taken before the bench started, since the host
has its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services import BENCH_MARK, cgroup_dirs_named


@dataclass(frozen=True)
class NetSnapshot:
    netns: frozenset[str]
    veths: frozenset[str]


def net_snapshot() -> NetSnapshot:
    namespaces = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                namespaces.add(os.readlink(entry / "ns" / "net"))
            except OSError:
                continue
    named = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split("\n")
    namespaces.update(f"named:{line.split()[0]}" for line in named if line.strip())
    links = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=False
    ).stdout
    veths = {line.split(":")[1].strip() for line in links.splitlines() if ":" in line}
    return NetSnapshot(frozenset(namespaces), frozenset(veths))


def _ip(*args: str) -> str:
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.path.exists(p)), None)
    if ip is None:
        return ""
    return subprocess.run([ip, *args], capture_output=True, text=True, check=False).stdout


def _processes(base: Path, mark: str = BENCH_MARK) -> list[str]:
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cgroup = (entry / "cgroup").read_text()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z" and mark not in cgroup:
            continue
        if mark in cgroup or str(base) in cmdline:
            found.append(f"{entry.name} {cmdline[:120]}")
    return found


def _mounts(base: Path, mark: str = BENCH_MARK) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(base) in line or mark in line:
            found.append(line.split()[4])
    return found


def _cgroups(mark: str = BENCH_MARK) -> list[str]:
    return cgroup_dirs_named(mark)


def check(base: Path, before: NetSnapshot, mark: str = BENCH_MARK) -> dict[str, list[str]]:
    """Leftovers by kind; empty when the bench cleaned up after itself.

    `mark`: what names the bench's cgroups and mounts; pass the base dir's name to ignore
    other benches running at the same time (their netns and veths still count).
    """
    after = net_snapshot()
    leftovers = {
        "processes": _processes(base, mark),
        "mounts": _mounts(base, mark),
        "cgroups": _cgroups(mark),
        "netns": sorted(after.netns - before.netns),
        "veth": sorted(after.veths - before.veths),
        "tmp_dirs": [str(base)] if base.exists() else [],
    }
    return {kind: items for kind, items in leftovers.items() if items}

"""CPU lists ("0-1,3") as the kernel and Docker write them, and the host's CPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

ONLINE_CPUS_FILE = "/sys/devices/system/cpu/online"


def parse_cpu_list(text: str) -> frozenset[int]:
    """The CPU numbers in `text` ("0-2,5"); ValueError on bad syntax.

    Follows Docker's ParseUintList: "" is the empty set, parts are `N` or
    `N-M` with N <= M, no spaces, no empty parts.
    """
    if text == "":
        return frozenset()
    cpus: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not dash:
            cpus.add(_number(low, text))
            continue
        first, last = _number(low, text), _number(high, text)
        if last < first:
            raise ValueError(f"invalid format: {text}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def _number(part: str, text: str) -> int:
    if not part.isascii() or not part.isdigit():
        raise ValueError(f"invalid format: {text}")
    return int(part)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """The kernel's compact form of a set of CPUs: {0, 1, 2, 5} -> "0-2,5"."""
    ranges: list[str] = []
    ordered = sorted(cpus)
    start = prev = -2
    for cpu in ordered:
        if cpu != prev + 1:
            if start >= 0:
                ranges.append(_range(start, prev))
            start = cpu
        prev = cpu
    if start >= 0:
        ranges.append(_range(start, prev))
    return ",".join(ranges)


def _range(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


@dataclass(frozen=True)
class HostCpus:
    """What validation needs to know about the host's CPUs.

    `count` is the number of CPUs this process may run on (Docker's
    sysinfo.NumCPU); `online` the CPUs a cpuset may name, `online_text`
    the same in the kernel's list form for messages.
    """

    count: int
    online: frozenset[int]
    online_text: str

    @classmethod
    def probe(cls) -> HostCpus:
        with open(ONLINE_CPUS_FILE, encoding="ascii") as f:
            text = f.read().strip()
        online = parse_cpu_list(text)
        count = len(os.sched_getaffinity(0)) or len(online)
        return cls(count=count, online=online, online_text=text)

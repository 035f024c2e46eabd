"""What the host has: memory, online CPUs and CPU time so far (for /info and stats)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class HostFacts:
    """What does not change while the daemon runs: read once per use, not per sample."""

    memory: int
    cpus: int

    @classmethod
    def read(cls) -> HostFacts:
        return cls(memory=mem_total(), cpus=online_cpus())


def mem_total() -> int:
    """MemTotal in bytes; 0 if /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def online_cpus() -> int:
    return os.sysconf("SC_NPROCESSORS_ONLN")


def system_cpu_ns(proc_stat_text: str, ticks_per_second: int) -> int:
    """All CPUs' time so far (the first seven fields of /proc/stat's `cpu` line, user to softirq),
    in nanoseconds (pure): the denominator of `docker stats`'s CPU %, as moby computes it."""
    for line in proc_stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return sum(int(value) for value in fields[1:8]) * (1_000_000_000 // ticks_per_second)
    return 0


def read_system_cpu_ns() -> int:
    with open("/proc/stat", encoding="ascii") as file:
        return system_cpu_ns(file.read(), os.sysconf("SC_CLK_TCK"))

"""What a process costs, read from /proc: CPU time, wake-ups, resident memory.

CPU is utime+stime of /proc/PID/stat (every thread, live or exited, in
clock ticks) and, finer, the run time in nanoseconds of /proc/PID/schedstat
summed over the live threads. Wake-ups are the context switches of
/proc/PID/task/*/status summed over the live threads: each time a thread
that slept was woken (voluntary) or was preempted (involuntary). An idle
event loop that polls shows up here first, as wake-ups per second, long
before it shows up as CPU. Memory is VmRSS of /proc/PID/status and, where
the kernel has it, Pss of /proc/PID/smaps_rollup (shared pages divided
among the processes that map them, so PSS adds up across processes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    pid: int
    cpu_ticks: int
    run_ns: int  # schedstat, live threads only
    wakeups: int  # voluntary + involuntary context switches, live threads
    threads: int


@dataclass(frozen=True)
class Memory:
    rss_kb: int
    pss_kb: int | None


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5) (utime, stime); the split starts at field 3.
    return int(fields[11]) + int(fields[12])


def _threads(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []


def _thread_counts(task: Path) -> tuple[int, int]:
    """(run ns, context switches) of one thread; (0, 0) if it is gone."""
    run_ns = switches = 0
    try:
        run_ns = int((task / "schedstat").read_text().split()[0])
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return run_ns, switches


def sample(pid: int) -> Sample:
    tasks = _threads(pid)
    run_ns = wakeups = 0
    for task in tasks:
        ns, switches = _thread_counts(task)
        run_ns += ns
        wakeups += switches
    return Sample(pid=pid, cpu_ticks=cpu_ticks(pid), run_ns=run_ns, wakeups=wakeups, threads=len(tasks))


def memory(pid: int) -> Memory:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    pss: int | None = None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
                break
    except OSError:
        pass
    return Memory(rss_kb=rss, pss_kb=pss)


@dataclass
class GroupUsage:
    """A named set of processes (one daemon, or 200 shims) over a window."""

    name: str
    pids: list[int]
    seconds: float
    cpu_ticks: int
    run_ns: int
    wakeups: int
    threads: int
    rss_kb: int
    pss_kb: int | None
    vanished: list[int]

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / CLK_TCK

    @property
    def cpu_percent(self) -> float:
        """Of one core, from utime+stime (resolution: one tick over the window)."""
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def run_percent(self) -> float:
        """Of one core, from schedstat (nanoseconds, live threads only)."""
        return 100.0 * self.run_ns / 1e9 / self.seconds if self.seconds else 0.0

    @property
    def wakeups_per_second(self) -> float:
        return self.wakeups / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "processes": len(self.pids),
            "pids": self.pids[:10],
            "seconds": round(self.seconds, 3),
            "cpu_ticks": self.cpu_ticks,
            "clk_tck": CLK_TCK,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_percent_of_core": round(self.cpu_percent, 4),
            "schedstat_run_ms": round(self.run_ns / 1e6, 3),
            "schedstat_percent_of_core": round(self.run_percent, 4),
            "wakeups": self.wakeups,
            "wakeups_per_second": round(self.wakeups_per_second, 3),
            "threads": self.threads,
            "rss_kb": self.rss_kb,
            "pss_kb": self.pss_kb,
            "vanished_during_window": self.vanished,
        }


class Window:
    """Samples groups of processes at its start and end; usage() gives what each spent in between."""

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: sorted(set(pids)) for name, pids in groups.items()}
        self.start: dict[int, Sample] = {}
        self.end: dict[int, Sample] = {}
        self.started_ns = self.ended_ns = 0

    def _sample_all(self) -> dict[int, Sample]:
        out = {}
        for pids in self.groups.values():
            for pid in pids:
                try:
                    out[pid] = sample(pid)
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def begin(self) -> None:
        self.started_ns = time.monotonic_ns()
        self.start = self._sample_all()

    def finish(self) -> None:
        self.end = self._sample_all()
        self.ended_ns = time.monotonic_ns()

    def usage(self) -> dict[str, GroupUsage]:
        seconds = (self.ended_ns - self.started_ns) / 1e9
        result = {}
        for name, pids in self.groups.items():
            ticks = run_ns = wakeups = threads = rss = 0
            pss: int | None = 0
            vanished = []
            for pid in pids:
                if pid not in self.start or pid not in self.end:
                    vanished.append(pid)
                    continue
                a, b = self.start[pid], self.end[pid]
                ticks += b.cpu_ticks - a.cpu_ticks
                run_ns += max(0, b.run_ns - a.run_ns)
                wakeups += max(0, b.wakeups - a.wakeups)
                threads += b.threads
                try:
                    mem = memory(pid)
                except OSError:
                    vanished.append(pid)
                    continue
                rss += mem.rss_kb
                pss = None if pss is None or mem.pss_kb is None else pss + mem.pss_kb
            result[name] = GroupUsage(name, pids, seconds, ticks, run_ns, wakeups, threads, rss, pss, vanished)
        return result

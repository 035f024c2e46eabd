"""A container's cgroup on a pure v2 host: one directory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import structlog

from supervisor.isolation.cgroups.fs import parse_keyed, parse_max, read_int, read_or, read_pids, read_text, remove_dirs
from supervisor.isolation.cgroups.interface import CpuStats, OomSignal, Usage
from supervisor.isolation.cgroups.limits import write_limits
from supervisor.isolation.cgroups.paths import display
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v2 import core, cpu, io, mapping, memory, pids
from supervisor.isolation.spec import Membership

log = structlog.get_logger(__name__)

UNIFIED = "unified"


@dataclass(frozen=True)
class V2Cgroup:
    parts: tuple[str, ...]
    directory: str

    @property
    def path(self) -> str:
        return display(self.parts)

    @property
    def paths(self) -> dict[str, str]:
        return {UNIFIED: self.directory}

    def _file(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def procs_files(self) -> list[str]:
        return [self._file(core.PROCS)]

    def membership(self) -> Membership:
        return Membership(v2_dir=self.directory, v1_tasks=())

    def pids(self) -> list[int]:
        return sorted(read_pids(self._file(core.PROCS)))

    def kill(self) -> None:
        core.kill(self.directory)

    def freeze(self) -> bool:
        return core.freeze(self.directory)

    def thaw(self) -> None:
        core.thaw(self.directory)

    def is_populated(self) -> bool:
        return core.populated(self.directory)

    def events_file(self) -> str | None:
        return self._file(core.EVENTS)

    def oom_kill_count(self) -> int:
        return memory.oom_kills(read_text(self._file(memory.EVENTS)))

    def oom_signal(self) -> OomSignal | None:
        events = self._file(memory.EVENTS)
        return OomSignal(events_file=events) if os.path.exists(events) else None

    def cpu_stats(self) -> CpuStats:
        return cpu.stats(read_text(self._file(cpu.STAT)))

    def memory_usage(self) -> int:
        return read_int(self._file(memory.CURRENT))

    def pids_current(self) -> int:
        return read_int(self._file(pids.CURRENT))

    def usage(self) -> Usage:
        cpu_stat = read_or(self._file(cpu.STAT), "")
        user, system = cpu.times_usec(cpu_stat)
        return Usage(
            cpu=cpu.stats(cpu_stat),
            user_usec=user,
            system_usec=system,
            memory=int(read_or(self._file(memory.CURRENT), "0")),
            memory_limit=parse_max(read_or(self._file(memory.MAX), "max")),
            memory_max=None,
            memory_failcnt=None,
            memory_stat=parse_keyed(read_or(self._file(memory.STAT), "")),
            pids=int(read_or(self._file(pids.CURRENT), "0")),
            pids_limit=parse_max(read_or(self._file(pids.MAX), "max")),
            io=io.service_bytes(read_or(self._file(io.STAT), "")),
        )

    def update(self, resources: Resources) -> None:
        write_limits(mapping.files(resources).items(), lambda _controller: self.directory)

    def remove(self) -> bool:
        ok = remove_dirs([self.directory])
        if ok:
            log.info("cgroup.removed", path=self.path)
        return ok

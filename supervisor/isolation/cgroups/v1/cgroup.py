"""A container's cgroup on a v1 host: one dir per hierarchy, plus the unified one."""

from __future__ import annotations

import os
from dataclasses import dataclass

import structlog

from supervisor.isolation.cgroups.fs import (
    parse_keyed,
    parse_max,
    read_int,
    read_or,
    read_pids,
    read_pids_tree,
    read_text,
    remove_dirs,
)
from supervisor.isolation.cgroups.interface import CpuStats, OomSignal, Usage
from supervisor.isolation.cgroups.kill import kill_listed, kill_pids
from supervisor.isolation.cgroups.limits import write_limits
from supervisor.isolation.cgroups.mountinfo import CgroupMounts
from supervisor.isolation.cgroups.paths import display, under
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.cgroups.v1 import blkio, cpu, freezer, mapping, memory, pids
from supervisor.isolation.cgroups.v2 import core
from supervisor.isolation.spec import Membership

log = structlog.get_logger(__name__)

UNIFIED = "unified"
PROCS = "cgroup.procs"


@dataclass(frozen=True)
class V1Cgroup:
    """Limits and stats through the v1 controllers; membership in every hierarchy
    mounted (name=systemd included); populated events and cgroup.kill through
    the v2 unified hierarchy when it is mounted (hybrid)."""

    parts: tuple[str, ...]
    mounts: CgroupMounts

    @property
    def path(self) -> str:
        return display(self.parts)

    @property
    def paths(self) -> dict[str, str]:
        dirs = {h.key: under(h.mountpoint, self.parts) for h in self.mounts.v1}
        if self.mounts.unified is not None:
            dirs[UNIFIED] = under(self.mounts.unified, self.parts)
        return dirs

    def controller_dir(self, controller: str) -> str | None:
        mountpoint = self.mounts.v1_dir(controller)
        return None if mountpoint is None else under(mountpoint, self.parts)

    def _file(self, controller: str, name: str) -> str:
        directory = self.controller_dir(controller)
        if directory is None:
            raise FileNotFoundError(f"no v1 {controller} hierarchy is mounted")
        return os.path.join(directory, name)

    @property
    def _unified(self) -> str | None:
        """The unified dir, None when it is not mounted or not there: a daemon killed while it
        made or removed a cgroup leaves some of its dirs, and then the v1 ones must do."""
        if self.mounts.unified is None:
            return None
        directory = under(self.mounts.unified, self.parts)
        return directory if os.path.isdir(directory) else None

    def procs_files(self) -> list[str]:
        return [os.path.join(d, PROCS) for d in self.paths.values()]

    def membership(self) -> Membership:
        tasks = tuple(os.path.join(under(h.mountpoint, self.parts), "tasks") for h in self.mounts.v1)
        return Membership(v2_dir=self._unified, v1_tasks=tasks)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            found.update(read_pids(procs))
        return sorted(found)

    def kill(self) -> None:
        unified = self._unified
        if unified is not None and core.can_kill(unified):
            core.kill(unified)
            return
        if not self._kill_with_freezer():
            for procs in self.procs_files():
                kill_listed(procs)

    def freeze(self) -> bool:
        """Through the unified hierarchy when it has cgroup.freeze (a frozen v2 cgroup can still be
        killed, a v1-frozen one cannot), else the v1 freezer."""
        unified = self._unified
        if unified is not None and os.path.exists(os.path.join(unified, core.FREEZE)):
            return core.freeze(unified)
        freezer_dir = self.controller_dir("freezer")
        if freezer_dir is None:
            raise FileNotFoundError("no freezer: neither v2 cgroup.freeze nor a v1 freezer hierarchy")
        return freezer.freeze(freezer_dir)

    def thaw(self) -> None:
        unified = self._unified
        if unified is not None and os.path.exists(os.path.join(unified, core.FREEZE)):
            core.thaw(unified)
        freezer_dir = self.controller_dir("freezer")
        if freezer_dir is not None and os.path.isdir(freezer_dir):
            try:
                freezer.thaw(freezer_dir)
            except FileNotFoundError:
                pass

    def _kill_with_freezer(self) -> bool:
        """Freeze (no forks meanwhile), SIGKILL each process, thaw; False without a freezer."""
        freezer_dir = self.controller_dir("freezer")
        if freezer_dir is None or not os.path.isdir(freezer_dir):
            return False
        frozen = freezer.freeze(freezer_dir)
        try:
            kill_pids(read_pids_tree(freezer_dir))
        finally:
            freezer.thaw(freezer_dir)
        if not frozen:
            log.warning("cgroup.freeze_timeout", path=freezer_dir)
        return True

    def is_populated(self) -> bool:
        unified = self._unified
        if unified is not None:
            return core.populated(unified)
        return bool(self.pids())

    def events_file(self) -> str | None:
        unified = self._unified
        return None if unified is None else os.path.join(unified, core.EVENTS)

    def oom_kill_count(self) -> int:
        return memory.oom_kills(read_text(self._file("memory", memory.OOM_CONTROL)))

    def oom_signal(self) -> OomSignal | None:
        memory_dir = self.controller_dir("memory")
        if memory_dir is None:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        control = os.open(os.path.join(memory_dir, memory.OOM_CONTROL), os.O_RDONLY | os.O_CLOEXEC)
        try:
            # The kernel keeps the registration until the eventfd is closed or the cgroup removed.
            with open(os.path.join(memory_dir, "cgroup.event_control"), "w") as event_control:
                event_control.write(f"{efd} {control}")
        except OSError:
            os.close(efd)
            raise
        finally:
            os.close(control)
        return OomSignal(eventfd=efd)

    def cpu_stats(self) -> CpuStats:
        return cpu.stats(read_text(self._file("cpu", cpu.STAT)), read_int(self._file("cpuacct", cpu.USAGE)))

    def memory_usage(self) -> int:
        return read_int(self._file("memory", memory.USAGE))

    def pids_current(self) -> int:
        return read_int(self._file("pids", pids.CURRENT))

    def usage(self) -> Usage:
        user, system = cpu.times_usec(self._read_or("cpuacct", cpu.TIMES, ""), os.sysconf("SC_CLK_TCK"))
        return Usage(
            cpu=cpu.stats(self._read_or("cpu", cpu.STAT, ""), int(self._read_or("cpuacct", cpu.USAGE, "0"))),
            user_usec=user,
            system_usec=system,
            memory=int(self._read_or("memory", memory.USAGE, "0")),
            memory_limit=memory.limit_of(self._read_or("memory", memory.LIMIT, str(1 << 62))),
            memory_max=int(self._read_or("memory", memory.MAX_USAGE, "0")),
            memory_failcnt=int(self._read_or("memory", memory.FAILCNT, "0")),
            memory_stat=parse_keyed(self._read_or("memory", memory.STAT, "")),
            pids=int(self._read_or("pids", pids.CURRENT, "0")),
            pids_limit=parse_max(self._read_or("pids", pids.MAX, "max")),
            io=blkio.service_bytes(self._read_or("blkio", blkio.SERVICE_BYTES, "")),
        )

    def _read_or(self, controller: str, name: str, default: str) -> str:
        try:
            return read_or(self._file(controller, name), default)
        except FileNotFoundError:  # the hierarchy is not mounted
            return default

    def update(self, resources: Resources) -> None:
        memory_dir = self.controller_dir("memory")
        current_limit = -1
        if memory_dir is not None and os.path.isdir(memory_dir):
            current_limit = read_int(os.path.join(memory_dir, memory.LIMIT))
        write_limits(mapping.ordered_writes(resources, current_limit), self.controller_dir)

    def remove(self) -> bool:
        ok = remove_dirs(self.paths.values())
        if ok:
            log.info("cgroup.removed", path=self.path)
        return ok

"""The driver interface shared by the v1 (and hybrid) and v2 drivers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups.resources import Resources
from supervisor.isolation.spec import Membership

CgroupVersion = Literal["1", "2"]


class LimitRejected(InvalidArgument):
    """The kernel refused a limit (e.g. a memory limit below current usage)."""


@dataclass(frozen=True)
class CpuStats:
    """CPU time used and CFS throttling, in microseconds and periods."""

    usage_usec: int
    nr_periods: int
    nr_throttled: int
    throttled_usec: int


@dataclass(frozen=True)
class IoBytes:
    """Bytes read or written on one block device (`op` "read" or "write")."""

    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True)
class Usage:
    """One sample of what a cgroup uses, as `docker stats` shows it. A limit of None is none set;
    `memory_max` and `memory_failcnt` only v1 keeps; `memory_stat` is memory.stat as the kernel
    names its keys (v1 and v2 differ)."""

    cpu: CpuStats
    user_usec: int
    system_usec: int
    memory: int
    memory_limit: int | None
    memory_max: int | None
    memory_failcnt: int | None
    memory_stat: dict[str, int]
    pids: int
    pids_limit: int | None
    io: tuple[IoBytes, ...]


@dataclass(frozen=True)
class OomSignal:
    """Where the kernel announces OOM in a cgroup, so a watcher needs no polling.

    Exactly one is set. `eventfd` (v1: registered on memory.oom_control
    through cgroup.event_control) becomes readable at each OOM; the caller
    owns and closes it. `events_file` (v2: memory.events) is modified when
    its counters change; compare `oom_kill_count()` to tell an OOM kill
    from other memory events.
    """

    eventfd: int | None = None
    events_file: str | None = None


class Cgroup(Protocol):
    """One container's cgroup, in every hierarchy the driver uses."""

    @property
    def path(self) -> str:
        """The cgroup path as /proc/PID/cgroup shows it: "/corral/abc"."""
        ...

    @property
    def paths(self) -> Mapping[str, str]:
        """Hierarchy label ("memory", "name=systemd", "unified") -> directory."""
        ...

    def procs_files(self) -> list[str]:
        """Every cgroup.procs of this cgroup (one per hierarchy)."""
        ...

    def membership(self) -> Membership:
        """What a starting container needs to join this cgroup quickly."""
        ...

    def pids(self) -> list[int]:
        """The processes in the cgroup now."""
        ...

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (does not wait for them to exit)."""
        ...

    def freeze(self) -> bool:
        """Stop every process in the cgroup (v2 cgroup.freeze, else the v1 freezer); True once frozen.

        False if the kernel did not report the cgroup frozen in time (it may
        still be freezing): call `thaw` either way.
        """
        ...

    def thaw(self) -> None:
        """Undo `freeze`; harmless on a cgroup that is not frozen or is gone."""
        ...

    def is_populated(self) -> bool: ...

    def events_file(self) -> str | None:
        """The v2 cgroup.events file to watch with inotify; None without v2."""
        ...

    def oom_kill_count(self) -> int: ...

    def oom_signal(self) -> OomSignal | None:
        """How to be told of OOM in this cgroup; None if the host has no memory controller."""
        ...

    def cpu_stats(self) -> CpuStats: ...

    def memory_usage(self) -> int: ...

    def pids_current(self) -> int: ...

    def usage(self) -> Usage:
        """CPU, memory, pids and block I/O now; a controller the host lacks reads as zero."""
        ...

    def update(self, resources: Resources) -> None:
        """Write the limits set in `resources`; fields that are None stay as they are."""
        ...

    def remove(self) -> bool:
        """rmdir the cgroup everywhere; idempotent; False (and logged) if a dir stays."""
        ...


class CgroupDriver(Protocol):
    """Creates and finds containers' cgroups; one per daemon, chosen by detect()."""

    @property
    def version(self) -> CgroupVersion:
        """ "1" (v1 or hybrid) or "2", as `docker info` reports CgroupVersion."""
        ...

    @property
    def name(self) -> str:
        """`docker info`'s CgroupDriver: always "cgroupfs"."""
        ...

    def create(self, parent: str, name: str, resources: Resources) -> Cgroup:
        """Make the cgroup `name` under `parent` (made too if absent) with `resources`.

        On failure nothing this call made is left behind.
        """
        ...

    def open(self, parent: str, name: str) -> Cgroup:
        """The existing cgroup `name` under `parent`; FileNotFoundError if it is gone."""
        ...

    def children(self, parent: str) -> list[str]:
        """Names of the cgroups under `parent` (in any hierarchy)."""
        ...

    def remove_parent(self, parent: str) -> bool:
        """rmdir `parent` in every hierarchy if it is empty; False if a dir stays."""
        ...

"""What a container's cgroup announces, turned into engine events: OOM, and emptiness.

Both are waited for, never polled: OOM through the kernel's notification
(a v1 eventfd, or inotify on v2's memory.events), emptiness through
inotify on the v2 `cgroup.events` file (`populated 0`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# A cgroup that stays populated this long after its container died has a process we cannot kill.
_EMPTY_TIMEOUT = 5.0


def _report_oom(engine: Engine, container: Container) -> None:
    container.oom_reported += 1
    engine.events.publish(Event("container", "oom", container.id, container_attributes(container)))


async def _eventfd_fired(fd: int) -> None:
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            os.eventfd_read(fd)
            return
        except BlockingIOError:
            continue


async def watch_oom(engine: Engine, container: Container, cgroup: Cgroup) -> None:
    """Publish an `oom` event each time the kernel reports OOM in the container's cgroup; runs until cancelled."""
    signal = cgroup.oom_signal()
    if signal is None:
        return
    if signal.eventfd is not None:
        try:
            while True:
                await _eventfd_fired(signal.eventfd)
                _report_oom(engine, container)
        finally:
            os.close(signal.eventfd)
    assert signal.events_file is not None
    seen = cgroup.oom_kill_count()
    with engine.inotify.watch(Path(signal.events_file)) as watch:
        while True:
            await watch.wait()
            count = cgroup.oom_kill_count()
            for _ in range(count - seen):
                _report_oom(engine, container)
            seen = max(seen, count)


async def until_empty(engine: Engine, cgroup: Cgroup) -> None:
    """Return once no process is left in the cgroup (at once if none is)."""
    events = cgroup.events_file()
    try:
        if events is None or not cgroup.is_populated():
            return
        with engine.inotify.watch(Path(events)) as watch, trio.fail_after(_EMPTY_TIMEOUT):
            while cgroup.is_populated():
                await watch.wait()
    except trio.TooSlowError:
        log.warning("cgroup.still_populated", path=cgroup.path, pids=cgroup.pids())
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise

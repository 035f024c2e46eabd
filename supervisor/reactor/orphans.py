"""When the launcher dies: the daemon adopts its containers (it is their child subreaper).

The daemon sets PR_SET_CHILD_SUBREAPER and the launcher it starts is its
child, so when the launcher dies its containers are re-parented to the
daemon. `Reaper` collects every child's exit status on SIGCHLD; for a
container it keeps the status for the supervision task, which learned
of the exit from the container's pidfd. The daemon also holds copies of
each container's output pipes (never read while the launcher lives), so
it can take over writing the container's log: no output is lost and the
container never writes into a closed pipe.

A daemon that did not start the launcher (it was restarted while the
launcher ran on) is not the containers' ancestor: if that launcher dies,
their exit codes are unknown (255), though their logs are still kept.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.isolation.launcher.logfile import LogFile
from supervisor.isolation.launcher.replies import ExitStatus
from supervisor.reactor.broadcast import Broadcast
from supervisor.reactor.container import Container, Process
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# How long to wait, after a pidfd says the process is gone, for SIGCHLD to bring its status.
_STATUS_GRACE = 1.0
_KEEP_STATUSES = 4096


class Reaper:
    """Reaps the daemon's children and keeps their exit codes by pid for a while."""

    def __init__(self) -> None:
        self._codes: dict[int, int] = {}
        self._changed = Broadcast()

    async def run(self) -> None:
        with trio.open_signal_receiver(signal.SIGCHLD) as signals:
            self._reap()
            async for _ in signals:
                self._reap()

    def _reap(self) -> None:
        while True:
            try:
                result = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            if result is None:
                return
            code = result.si_status if result.si_code == os.CLD_EXITED else 128 + result.si_status
            self._codes[result.si_pid] = code
            if len(self._codes) > _KEEP_STATUSES:
                self._codes.pop(next(iter(self._codes)))
            log.debug("daemon.reaped", pid=result.si_pid, exit_code=code)
            self._changed.notify()

    async def exit_code(self, pid: int, grace: float = _STATUS_GRACE) -> int | None:
        """The exit code of child `pid` once reaped; None if it does not come (not our child)."""
        with trio.move_on_after(grace):
            await self._changed.wait_until(lambda: pid in self._codes)
        return self._codes.pop(pid, None)


async def _drain(fd: int, stream: str, logfile: LogFile) -> None:
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)
            continue
        except OSError as err:
            # A pty master reads EIO once the container side is closed: the end of its output.
            if err.errno == errno.EIO:
                return
            raise
        if not chunk:
            return
        logfile.write(stream, chunk)


async def follow_orphan(engine: Engine, container: Container, process: Process) -> ExitStatus:
    """The container outlived its launcher: keep its log and wait for its exit ourselves."""
    log.warning("container.orphaned", id=container.id, pid=process.pid)
    process.orphaned = True
    spec = container.spec
    logfile = LogFile(str(container.files.log), spec.log.max_size, spec.log.max_files)
    outputs = dict(process.outputs)
    if process.pty_fd is not None:
        outputs = {"stdout": process.pty_fd}
    try:
        async with trio.open_nursery() as nursery:
            for stream, fd in outputs.items():
                nursery.start_soon(_drain, fd, stream, logfile)
            await trio.lowlevel.wait_readable(process.pidfd)
            code = await engine.reaper.exit_code(process.pid)
    finally:
        logfile.close()
    if code is None:
        log.warning("container.exit_unknown", id=container.id, pid=process.pid)
        return ExitStatus.unknown()
    return ExitStatus(exit_code=code, signal=None, finished_at=now_rfc3339())

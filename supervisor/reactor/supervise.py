"""One task per running container: wait for its exit, record it, clean up after it.

The exit is seen through the container's pidfd (no polling); the launcher
then gives the status once the container's output is all in the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.isolation.launcher.client import ExitStatus, LauncherLost
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event
from supervisor.reactor.remove import remove_container
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# The launcher is gone and the process too: Docker reports an unknown exit like this.
_UNKNOWN_EXIT = 255


async def supervise(engine: Engine, container: Container) -> None:
    process = container.process
    assert process is not None
    try:
        # The launcher answers once the process is reaped and its output is all in the log.
        status = await engine.launcher.wait(container.id)
    except LauncherLost:
        # Without the launcher, the pidfd still says when the process is gone.
        await trio.lowlevel.wait_readable(process.pidfd)
        status = None
    if status is None:
        status = ExitStatus(exit_code=_UNKNOWN_EXIT, signal=None, finished_at=now_rfc3339())
    await record_exit(engine, container, status)


async def record_exit(engine: Engine, container: Container, status: ExitStatus) -> None:
    """Everything that follows a container's exit, whether seen live or learned on restore.

    Waiters hear of the exit (and of an `--rm` removal) before the cgroup
    and launcher clean-up; all of it holds the container's lock, so a start
    that follows waits for its cgroup to go. Shielded: once begun, the
    record is finished even if the daemon is shutting down.
    """
    with trio.CancelScope(shield=True):
        async with container.lock:
            cgroup, container.cgroup = container.cgroup, None
            oom_killed = False
            if cgroup is not None:
                oom_killed = cgroup.oom_kill_count() > 0
                # The pid namespace is gone, but an `exec`'d straggler could still hold the cgroup.
                cgroup.kill()
            if container.process is not None:
                container.process.close()
                container.process = None
            container.transition(
                container.state.evolve(
                    status="exited",
                    pid=0,
                    exit_code=status.exit_code,
                    oom_killed=oom_killed,
                    finished_at=status.finished_at,
                ),
                exited=True,
            )
            if oom_killed:
                engine.events.publish(Event("container", "oom", container.id, {"name": container.name}))
            engine.events.publish(
                Event("container", "die", container.id, {"name": container.name, "exitCode": str(status.exit_code)})
            )
            if container.spec.auto_remove and not (container.removed or container.removing):
                await remove_container(engine, container, force=True)
            if cgroup is not None:
                # remove() retries briefly while v1 tears a cgroup down, so keep it off the event loop.
                await trio.to_thread.run_sync(cgroup.remove)
            try:
                await engine.launcher.forget(container.id)
            except (LauncherLost, RuntimeError) as err:
                log.warning("container.forget_failed", id=container.id, error=str(err))

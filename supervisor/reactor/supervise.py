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
    await trio.lowlevel.wait_readable(process.pidfd)
    try:
        status = await engine.launcher.wait(container.id)
    except LauncherLost:
        status = None
    if status is None:
        status = ExitStatus(exit_code=_UNKNOWN_EXIT, signal=None, finished_at=now_rfc3339())
    await record_exit(engine, container, status)


async def record_exit(engine: Engine, container: Container, status: ExitStatus) -> None:
    """Everything that follows a container's exit, whether seen live or learned on restore."""
    oom_killed = False
    if container.cgroup is not None:
        oom_killed = container.cgroup.oom_kill_count() > 0
        cgroup, container.cgroup = container.cgroup, None
        # The pid namespace is gone, but an `exec`'d straggler could still hold the cgroup.
        cgroup.kill()
        # remove() retries briefly while v1 tears a cgroup down, so keep it off the event loop.
        await trio.to_thread.run_sync(cgroup.remove)
    if container.process is not None:
        container.process.close()
        container.process = None
    try:
        await engine.launcher.forget(container.id)
    except (LauncherLost, RuntimeError) as err:
        log.warning("container.forget_failed", id=container.id, error=str(err))
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
        with trio.CancelScope(shield=True):
            await remove_container(engine, container, force=True)

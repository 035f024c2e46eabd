"""One task per running container: wait for its exit, record it, restart it per its policy.

The exit is the launcher's answer to `wait` (given once the process is
reaped and its output is in the log); if the launcher is gone, the pidfd
says when the process is. After an exit the task applies the restart
policy with backoff (reactor/restart.py) and, when it restarts the
container, goes on supervising the new process: one task for the
container's whole supervised life.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import StartFailed
from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.launcher.client import LauncherLost
from supervisor.isolation.launcher.replies import ExitStatus
from supervisor.reactor.cgroup_events import until_empty, watch_oom
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.health import monitor_health
from supervisor.reactor.launch import launch
from supervisor.reactor.orphans import follow_orphan
from supervisor.reactor.remove import REMOVAL_GRACE, delete_retired, retire_container
from supervisor.reactor.restart import next_delay, should_restart

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


async def supervise(engine: Engine, container: Container) -> None:
    try:
        while True:
            status = await _wait_for_exit(engine, container)
            uptime = time.monotonic() - container.started_monotonic
            await record_exit(engine, container, status)
            if not await restart_with_backoff(engine, container, uptime):
                return
    except Exception as err:
        # A bug of ours: it must surface, but one container's supervision failing must not take
        # down the daemon and every other container's. Docker calls such a container "dead".
        log.exception("container.supervision_failed", id=container.id)
        if not container.removed:
            container.transition(container.state.evolve(status="dead", error=f"supervision failed: {err}"))


async def _wait_for_exit(engine: Engine, container: Container) -> ExitStatus:
    process = container.process
    assert process is not None
    container.oom_reported = 0
    async with trio.open_nursery() as nursery:
        if container.cgroup is not None:
            nursery.start_soon(watch_oom, engine, container, container.cgroup)
        if container.spec.health is not None:
            nursery.start_soon(monitor_health, engine, container, container.spec.health)
        try:
            status = await engine.launcher.wait(container.id)
        except LauncherLost:
            status = await follow_orphan(engine, container, process)
        nursery.cancel_scope.cancel()
    return status or ExitStatus.unknown()


def _wants_restart(engine: Engine, container: Container, at_daemon_start: bool) -> bool:
    state = container.state
    if container.removed or container.removing or engine.shutting_down:
        return False
    if container.restart_requested and not state.manually_stopped:
        return True
    return should_restart(
        container.spec.restart_policy,
        exit_code=state.exit_code,
        manually_stopped=state.manually_stopped,
        restart_count=state.restart_count,
        at_daemon_start=at_daemon_start,
    )


async def restart_with_backoff(
    engine: Engine, container: Container, uptime: float, *, at_daemon_start: bool = False
) -> bool:
    """Restart the exited container if its policy says so; True once a new process runs.

    The container shows `restarting` while it waits; a stop or remove in
    that time cancels the wait (Container.cancel_restart). A restart that
    fails to start counts as another exit and backs off again.
    """
    while _wants_restart(engine, container, at_daemon_start):
        delay = next_delay(container.spec.restart_policy, container.backoff, uptime)
        container.backoff = delay
        container.transition(container.state.evolve(status="restarting"))
        log.info("container.restart_scheduled", id=container.id, delay=delay, count=container.state.restart_count)
        with trio.CancelScope() as wait:
            container.restart_wait = wait
            await trio.sleep(delay)
        container.restart_wait = None
        async with container.lock:
            if wait.cancelled_caught or not _wants_restart(engine, container, at_daemon_start):
                if not container.removed:
                    container.transition(container.state.evolve(status="exited"))
                return False
            try:
                container.restart_requested = False
                await launch(engine, container, restart=True)
                return True
            except StartFailed as err:
                log.warning("container.restart_failed", id=container.id, error=str(err))
                uptime = 0.0
        at_daemon_start = False
    return False


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
            oom_killed = container.oom_reported > 0
            if cgroup is not None:
                oom_killed = oom_killed or cgroup.oom_kill_count() > 0
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
                # Removed next; a crash before that finds it running and records this exit again.
                persist=not container.spec.auto_remove,
            )
            if oom_killed and not container.oom_reported:
                # Killed before the watcher ran (or restored after the fact): report it now.
                engine.events.publish(Event("container", "oom", container.id, container_attributes(container)))
            engine.events.publish(
                Event("container", "die", container.id, container_attributes(container, exitCode=str(status.exit_code)))
            )
            if container.spec.auto_remove and not (container.removed or container.removing):
                await retire_container(engine, container, force=True)
                # The client that waited for this removal has its answer and is likely exiting now:
                # the clean-up below would only compete with it for the CPU.
                await trio.sleep(REMOVAL_GRACE)
                await _release(engine, container, cgroup)
                await delete_retired(engine, container)
            else:
                await _release(engine, container, cgroup)


async def _release(engine: Engine, container: Container, cgroup: Cgroup | None) -> None:
    """The exited process's cgroup, and its record in the launcher (which then lets go of its rootfs)."""
    if cgroup is not None:
        await until_empty(engine, cgroup)
        # remove() retries briefly while v1 tears a cgroup down, so keep it off the event loop.
        await trio.to_thread.run_sync(cgroup.remove)
    try:
        await engine.launcher.forget(container.id)
    except (LauncherLost, RuntimeError) as err:
        log.warning("container.forget_failed", id=container.id, error=str(err))


async def resume_after_exit(engine: Engine, container: Container, *, at_daemon_start: bool) -> None:
    """For a container found exited (at restore): restart it per its policy, then supervise it."""
    if await restart_with_backoff(engine, container, uptime=0.0, at_daemon_start=at_daemon_start):
        await supervise(engine, container)

"""Starting a container's process: cgroup, launch spec, clone through the launcher.

Shared by a user's start (reactor/start.py) and the supervision task's
restarts (reactor/supervise.py); the caller holds the container's lock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from supervisor.errors import StartFailed
from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.launcher.replies import Started
from supervisor.reactor.container import Container, Process
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.prepare import launch_spec_for, take_prepared
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine


async def launch(engine: Engine, container: Container, *, restart: bool) -> None:
    """Create the cgroup and start the process; the caller holds the container's lock.

    A user's start (`restart=False`) clears a manual stop and the restart
    count, as Docker's does; a policy restart counts one more.

    On a start failure the state records the exit code and error (Docker
    keeps such a container `created`, or `exited` when it had run before)
    and StartFailed propagates.
    """
    try:
        started, cgroup = await _start_process(engine, container)
    except StartFailed as err:
        status = "created" if container.state.status == "created" else "exited"
        container.transition(
            container.state.evolve(
                status=status,
                pid=0,
                exit_code=err.exit_code,
                error=str(err),
                restart_count=container.state.restart_count + (1 if restart else 0),
            ),
            exited=status == "exited",
        )
        engine.events.publish(
            Event("container", "die", container.id, container_attributes(container, exitCode=str(err.exit_code)))
        )
        raise
    container.process = Process(started.pid, started.pidfd, started.stdin_fd, started.pty_fd, dict(started.outputs))
    container.cgroup = cgroup
    container.started_monotonic = time.monotonic()
    container.transition(
        container.state.evolve(
            status="running",
            pid=started.pid,
            exit_code=0,
            error="",
            oom_killed=False,
            started_at=now_rfc3339(),
            restart_count=container.state.restart_count + 1 if restart else 0,
            manually_stopped=container.state.manually_stopped if restart else False,
        )
    )
    attributes = container_attributes(container)
    if restart:
        engine.events.publish(Event("container", "restart", container.id, attributes))
    engine.events.publish(Event("container", "start", container.id, attributes))


async def _start_process(engine: Engine, container: Container) -> tuple[Started, Cgroup]:
    """The parked process a create prepared, if still good; else a fresh one. The cgroup goes on failure."""
    prepared = await take_prepared(engine, container)
    if prepared is not None:
        return prepared
    cgroup = engine.cgroups.create(engine.config.cgroup_parent, container.id, container.spec.resources)
    try:
        spec = launch_spec_for(engine, container, cgroup, engine.host_resolv_conf())
        return await engine.launcher.start(spec), cgroup
    except BaseException:
        await trio.to_thread.run_sync(cgroup.remove)
        raise

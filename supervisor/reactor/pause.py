"""`pause` and `unpause`: the container's cgroup frozen and thawed, as Docker's are.

A paused container still counts as running (State.Running, `docker ps`);
its status is `paused`, kept across a daemon restart (restore leaves its
cgroup frozen). Health probes skip it rather than fail, so a pause never
turns into an unhealthy restart. A stop or kill of a paused container
sends its signal and then thaws it, as moby's do, so the signal lands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, CorralError
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


class PauseFailed(CorralError):
    """The kernel did not report the cgroup frozen in time."""


async def pause_container(engine: Engine, container: Container) -> None:
    async with container.lock:
        if container.state.status == "paused":
            raise Conflict(f"Container {container.id} is already paused")
        cgroup = container.cgroup
        if container.state.status != "running" or cgroup is None or container.process is None:
            raise Conflict(f"Container {container.id} is not running")
        # Counted before the freeze: a probe running now is frozen with the container.
        container.pauses += 1
        # freeze() waits for the kernel to report the cgroup frozen: off the event loop.
        if not await trio.to_thread.run_sync(cgroup.freeze):
            await trio.to_thread.run_sync(cgroup.thaw)
            raise PauseFailed(f"Cannot pause container {container.id}: it did not freeze in time")
        container.transition(container.state.evolve(status="paused"))
    log.info("container.paused", id=container.id)
    engine.events.publish(Event("container", "pause", container.id, container_attributes(container)))


async def unpause_container(engine: Engine, container: Container) -> None:
    async with container.lock:
        if container.state.status != "paused":
            raise Conflict(f"Container {container.id} is not paused")
        thaw(container)
    log.info("container.unpaused", id=container.id)
    engine.events.publish(Event("container", "unpause", container.id, container_attributes(container)))


def thaw(container: Container) -> bool:
    """Thaw a paused container's cgroup and mark it running again; False (nothing done) for any
    other status."""
    if container.state.status == "paused" and container.cgroup is not None:
        container.cgroup.thaw()
    return mark_unpaused(container)


def mark_unpaused(container: Container) -> bool:
    """A paused container's status back to running, its cgroup thawed by the caller; False if it
    was not paused."""
    if container.state.status != "paused":
        return False
    container.transition(container.state.evolve(status="running"))
    return True

"""`stop` (signal, grace period, then kill the whole cgroup) and `kill`."""

from __future__ import annotations

import math
import signal
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, NotFound, NotModified
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.pause import mark_unpaused, thaw
from supervisor.reactor.signals import parse_signal

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

DEFAULT_STOP_TIMEOUT = 10
# How long a SIGKILL waits for the exit to be recorded (moby's daemon.Kill waits as long).
KILL_WAIT = 10


def _send(container: Container, signum: signal.Signals) -> None:
    process = container.process
    if process is None:
        return
    try:
        signal.pidfd_send_signal(process.pidfd, signum)
    except ProcessLookupError:
        pass  # exited already; the supervision task is about to record it


def kill_everything(container: Container) -> bool:
    """SIGKILL the container's processes; True if that unpaused it."""
    _send(container, signal.SIGKILL)
    cgroup = container.cgroup
    if cgroup is not None:
        cgroup.kill()
        # Frozen by a pause or a commit, or freezing right now: the SIGKILL lands once thawed.
        cgroup.thaw()
    return mark_unpaused(container)


def _publish_unpause(engine: Engine, container: Container, unpaused: bool) -> None:
    if unpaused:
        engine.events.publish(Event("container", "unpause", container.id, container_attributes(container)))


def _mark_manually_stopped(container: Container) -> None:
    if not container.state.manually_stopped:
        container.transition(container.state.evolve(manually_stopped=True))


async def wait_for_exit(container: Container, exit_count: int) -> None:
    await container.wait_until(lambda c: c.exit_count > exit_count or c.removed)


async def stop_container(
    engine: Engine,
    container: Container,
    timeout: int | None = None,
    signal_name: str | None = None,
    *,
    manual: bool = True,
) -> None:
    signum = parse_signal(signal_name or container.spec.stop_signal or "SIGTERM")
    if container.state.status == "restarting":
        # Between two runs: the stop cancels the pending restart.
        if manual:
            _mark_manually_stopped(container)
        container.cancel_restart()
        await container.wait_until(lambda c: c.state.status != "restarting")
        engine.events.publish(Event("container", "stop", container.id, container_attributes(container)))
        return
    if not container.state.running or container.process is None:
        raise NotModified("container already stopped")
    if manual:
        _mark_manually_stopped(container)
    grace = timeout if timeout is not None else (container.spec.stop_timeout or DEFAULT_STOP_TIMEOUT)
    exits = container.exit_count
    _send(container, signum)
    unpaused = thaw(container)  # a paused container gets its signal once thawed, as moby's does
    engine.events.publish(
        Event("container", "kill", container.id, container_attributes(container, signal=str(int(signum))))
    )
    _publish_unpause(engine, container, unpaused)
    with trio.move_on_after(math.inf if grace < 0 else grace):
        await wait_for_exit(container, exits)
    if container.exit_count == exits and not container.removed:
        log.info("container.stop_timeout", id=container.id, seconds=grace)
        kill_everything(container)
        engine.events.publish(Event("container", "kill", container.id, container_attributes(container, signal="9")))
        await wait_for_exit(container, exits)
    engine.events.publish(Event("container", "stop", container.id, container_attributes(container)))


def _refuse_restarting(container: Container) -> None:
    if container.state.status == "restarting":
        raise Conflict(
            f"Cannot kill container: {container.id}: Container {container.id} is restarting, "
            "wait until the container is running"
        )


async def kill_container(engine: Engine, container: Container, signal_name: str | None = None) -> None:
    """Send a signal; a SIGKILL (the default) returns once the exit is recorded, as moby's does, so
    a `docker start` or `inspect` right after a `docker kill` sees the container stopped."""
    signum = parse_signal(signal_name or "SIGKILL")
    _refuse_restarting(container)
    if not container.state.running and container.lock.locked():
        # A start under way (or an exit's clean-up): moby's kill waits on the lock a start holds.
        with trio.move_on_after(KILL_WAIT):
            async with container.lock:
                pass
    if container.removed:
        raise NotFound(f"No such container: {container.id}")
    _refuse_restarting(container)
    if not container.state.running or container.process is None:
        raise Conflict(f"Cannot kill container: {container.id}: Container {container.id} is not running")
    # As moby's killWithSignal: any signal sent by hand stops the restart policy from acting.
    _mark_manually_stopped(container)
    exits = container.exit_count
    if signum == signal.SIGKILL:
        unpaused = kill_everything(container)
    else:
        _send(container, signum)
        unpaused = thaw(container)
    engine.events.publish(
        Event("container", "kill", container.id, container_attributes(container, signal=str(int(signum))))
    )
    _publish_unpause(engine, container, unpaused)
    if signum == signal.SIGKILL:
        with trio.move_on_after(KILL_WAIT):
            await wait_for_exit(container, exits)
        if container.exit_count == exits and not container.removed:
            log.warning("container.kill_unconfirmed", id=container.id, seconds=KILL_WAIT)


async def force_stop(container: Container) -> None:
    """SIGKILL and wait for the exit to be recorded (for `rm -f`)."""
    if not container.state.running or container.process is None:
        return
    exits = container.exit_count
    kill_everything(container)
    await wait_for_exit(container, exits)

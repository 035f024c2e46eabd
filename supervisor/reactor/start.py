"""`start`: cgroup, launch spec, fork through the launcher, hand over to supervision."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import CorralError, NotFound, NotModified, StartFailed
from supervisor.reactor.container import Container, Process
from supervisor.reactor.events import Event
from supervisor.reactor.launchspec import build_launch_spec
from supervisor.reactor.remove import remove_container
from supervisor.reactor.supervise import supervise
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


async def start_container(engine: Engine, container: Container) -> None:
    async with container.lock:
        if container.removed:
            raise NotFound(f"No such container: {container.id}")
        if container.state.running:
            raise NotModified("container already started")
        await _start_locked(engine, container)


async def _start_locked(engine: Engine, container: Container) -> None:
    spec = container.spec
    image = engine.images.resolve(spec.image_id)
    layers = engine.images.layer_dirs(image)
    cgroup = engine.cgroups.create(engine.config.cgroup_parent, container.id, spec.resources)
    try:
        launch = build_launch_spec(
            container_id=container.id,
            spec=spec,
            state_root=engine.config.root,
            container_dir=container.files.dir,
            layers=layers,
            cgroup=cgroup.membership(),
            log_path=container.files.log,
            host_resolv_conf=engine.host_resolv_conf(),
        )
        started = await engine.launcher.start(launch)
    except StartFailed as err:
        cgroup.remove()
        container.transition(container.state.evolve(exit_code=err.exit_code, error=str(err)))
        engine.events.publish(Event("container", "die", container.id, {"exitCode": str(err.exit_code)}))
        raise
    except BaseException:
        cgroup.remove()
        raise
    container.process = Process(started.pid, started.pidfd, started.stdin_fd, started.pty_fd)
    container.cgroup = cgroup
    container.transition(
        container.state.evolve(
            status="running", pid=started.pid, exit_code=0, error="", oom_killed=False, started_at=now_rfc3339()
        )
    )
    engine.events.publish(Event("container", "start", container.id, {"name": container.name, "image": spec.image}))
    engine.nursery.start_soon(supervise, engine, container)


async def start_or_autoremove(engine: Engine, container: Container) -> None:
    """Start; if that fails for an `--rm` container, remove it as Docker does."""
    try:
        await start_container(engine, container)
    except CorralError:
        if container.spec.auto_remove and not container.state.running:
            with trio.CancelScope(shield=True):
                await remove_container(engine, container, force=True)
        raise

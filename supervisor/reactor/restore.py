"""Re-adopting containers when the daemon starts: what is on disk meets what the launcher knows.

A container recorded as running that the launcher still has keeps its
process (same pid) and gets a new supervision task; one that exited while
no daemon was here gets its real exit status recorded now; one the
launcher runs although its record does not say so (a start the crash cut
short between its go byte and its state file) is recorded as running and
adopted the same way.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.isolation.launcher.replies import ExitStatus
from supervisor.reactor.cgroup_events import until_empty
from supervisor.reactor.container import Container, Process
from supervisor.reactor.remove import delete_leftovers
from supervisor.reactor.supervise import record_exit, resume_after_exit, supervise
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


async def restore_containers(engine: Engine) -> None:
    launcher_has = {k.cid: k for k in await engine.launcher.known()}
    known = set(launcher_has)
    stored_containers = list(engine.store.load_all())
    # Started, but the crash came before the state said so: the launcher runs them (a start writes
    # its go byte before its state file).
    cut_short = {
        s.id
        for s in stored_containers
        if s.state.status not in ("running", "paused") and s.id in launcher_has and not launcher_has[s.id].finished
    }
    running = {s.id for s in stored_containers if s.state.running} | cut_short
    await _remove_stale_cgroups(engine, keep=running)
    for stored in stored_containers:
        container = Container(
            stored.id,
            stored.name,
            stored.created,
            stored.spec,
            stored.state,
            engine.store,
            on_change=engine.registry.changed.notify,
        )
        engine.registry.add(container)
        if container.id in cut_short:
            log.warning("container.start_recovered", id=container.id, pid=launcher_has[container.id].pid)
            container.transition(
                container.state.evolve(
                    status="running",
                    pid=launcher_has[container.id].pid,
                    exit_code=0,
                    error="",
                    oom_killed=False,
                    started_at=now_rfc3339(),
                )
            )
        if container.state.status == "restarting":
            # The daemon died while it waited to restart this one: it is simply exited.
            container.transition(container.state.evolve(status="exited"))
        if not container.state.running:
            if container.state.status == "exited":
                engine.nursery.start_soon(partial(resume_after_exit, engine, container, at_daemon_start=True))
            continue
        try:
            container.cgroup = engine.cgroups.open(engine.config.cgroup_parent, container.id)
            # Frozen but not paused: a commit the crash cut short froze it.
            if container.state.status != "paused":
                container.cgroup.thaw()
        except FileNotFoundError:
            container.cgroup = None
        adopted = await engine.launcher.adopt(container.id) if container.id in known else None
        if adopted is None:
            log.warning("container.lost", id=container.id, pid=container.state.pid)
            await record_exit(engine, container, ExitStatus.unknown())
            engine.nursery.start_soon(partial(resume_after_exit, engine, container, at_daemon_start=False))
            continue
        container.process = Process(adopted.pid, adopted.pidfd, None, adopted.pty_fd, dict(adopted.outputs))
        if adopted.finished and adopted.exit is not None:
            log.info("container.exited_while_away", id=container.id, exit_code=adopted.exit.exit_code)
            await record_exit(engine, container, adopted.exit)
            engine.nursery.start_soon(partial(resume_after_exit, engine, container, at_daemon_start=False))
            continue
        log.info("container.readopted", id=container.id, pid=adopted.pid)
        engine.nursery.start_soon(supervise, engine, container)
    # Exits the launcher still holds for containers we no longer count as running (a daemon
    # stopped before its `forget` went through, or one removed meanwhile) would keep it alive.
    for cid, entry in launcher_has.items():
        holder = engine.registry.find(cid)
        if entry.finished and (holder is None or holder.process is None):
            await engine.launcher.forget(cid)
    # After those forgets: the launcher no longer holds their rootfs mounted.
    await delete_leftovers(engine)
    log.info("engine.restored", containers=len(engine.registry))


async def _remove_stale_cgroups(engine: Engine, keep: set[str]) -> None:
    """A daemon killed between an exit and its clean-up leaves the container's cgroup behind;
    nothing else would ever remove it. Any cgroup under our parent that no container recorded as
    running owns goes, before anything can be started again."""
    for name in engine.cgroups.children(engine.config.cgroup_parent):
        if name in keep:
            continue
        try:
            stale = engine.cgroups.open(engine.config.cgroup_parent, name)
        except FileNotFoundError:
            continue
        stale.thaw()
        stale.kill()
        await until_empty(engine, stale)
        await trio.to_thread.run_sync(stale.remove)
        log.info("cgroup.stale_removed", name=name)

"""A created container's process, made ahead of its start: runc's create/start split.

Started by a create (while its config's fsync runs in a worker thread),
a task makes its cgroup and asks the launcher to fork its process and park
it before the exec (launcher/containers.py): namespaces, rootfs and mounts
are made while the client is still busy between its create and its start
(the docker CLI attaches and sets up its wait in between). The start then
takes the parked process, if it was built from what the start would build
it from now (the same container spec and host resolv.conf, all a
LaunchSpec is built from that can change), and only says `go`; otherwise
it discards it and starts afresh.

A parked process costs a pid and some memory, so it is discarded when
nobody starts it within the daemon's `--prepare-window` (0 prepares
nothing), when its container is removed or its upper dir is mounted for a
`cp` or `export`, and at daemon shutdown. A daemon that dies leaves it to
the launcher, which kills whatever the closed connection prepared, and its
cgroup to the next daemon's stale-cgroup sweep (reactor/restore.py).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import StartFailed
from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.launcher import protocol
from supervisor.isolation.launcher.client import LauncherLost, NotPrepared
from supervisor.isolation.launcher.replies import Parked, Started
from supervisor.isolation.process import GO
from supervisor.isolation.spec import LaunchSpec
from supervisor.reactor.container import Container
from supervisor.reactor.initlayer import with_init_layer
from supervisor.reactor.launchspec import build_launch_spec
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.spare import Spare, discard_spare

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

@dataclass
class Prepared:
    """One prepared process of a container and the cgroup made for it.

    `done` once the launcher answered (`ready` if the process parked; a failed
    one's cgroup is gone by then); `claimed` once a start or a discard has it;
    `released` once it no longer owns the cgroup: started, or killed and the
    cgroup removed.
    """

    cgroup: Cgroup
    # What it was built from: the container's spec and the host's resolv.conf then.
    spec: ContainerSpec
    resolv_conf: str
    # Its handles, once parked; ours until a start takes them (or a discard closes them).
    parked: Parked | None = None
    done: trio.Event = field(default_factory=trio.Event)
    ready: bool = False
    claimed: bool = False
    released: trio.Event = field(default_factory=trio.Event)


def launch_spec_for(engine: Engine, container: Container, cgroup: Cgroup, resolv_conf: str) -> LaunchSpec:
    # By ID alone: a container outlives its image's `rmi -f`, as under Docker.
    layers = with_init_layer(container.files.dir, engine.images.container_layers(container.spec.image_id))
    return build_launch_spec(
        container_id=container.id,
        spec=container.spec,
        state_root=engine.config.root,
        container_dir=container.files.dir,
        layers=layers,
        cgroup=cgroup.membership(),
        log_path=container.files.log,
        host_resolv_conf=resolv_conf,
    )


async def prepare(engine: Engine, container: Container, spare: Spare | None = None) -> None:
    """The task a create starts: prepare (in `spare`'s cgroup and process, if it has one), then
    discard what no start took in time."""
    # One schedule point first: the create that started this task answers, and its config's fsync
    # thread starts, before the work below.
    await trio.lowlevel.checkpoint()
    # After it: a create that failed meanwhile has marked the container removed.
    if (
        engine.config.prepare_window <= 0
        or container.prepared is not None
        or container.removed
        or container.removing
        or container.state.running
    ):
        if spare is not None:
            await discard_spare(engine, spare)
        return
    cgroup = await _cgroup_for(engine, container, spare)
    if cgroup is None:
        return
    resolv_conf = engine.host_resolv_conf()
    try:
        launch_spec = launch_spec_for(engine, container, cgroup, resolv_conf)
    except Exception as err:  # noqa: BLE001 - as above
        log.info("container.prepare_skipped", id=container.id, error=str(err))
        if spare is not None and cgroup is spare.cgroup:
            await discard_spare(engine, spare)
        else:
            # Without a wait: no ticket tells a start to keep off this cgroup meanwhile (it is empty,
            # so the rmdir does not retry).
            cgroup.remove()
        return
    ticket = Prepared(cgroup, container.spec, resolv_conf)
    container.prepared = ticket
    try:
        # Shielded: once asked, the launcher forks; we must learn of it to discard it.
        with trio.CancelScope(shield=True):
            ticket.parked = await engine.launcher.prepare(launch_spec)
        ticket.ready = True
    except (StartFailed, NotPrepared, LauncherLost, RuntimeError) as err:
        log.info("container.prepare_failed", id=container.id, error=str(err))
    finally:
        if not ticket.ready:
            if spare is not None:
                # A spare the launcher did not get to use is still in the cgroup.
                with trio.CancelScope(shield=True), contextlib.suppress(LauncherLost, RuntimeError):
                    await engine.launcher.discard(container.id)
            # Before `done`: a start waiting on it makes a cgroup of the same name.
            await _remove_cgroup(cgroup)
            if container.prepared is ticket:
                container.prepared = None
        ticket.done.set()
    if not ticket.ready:
        return
    try:
        with trio.move_on_after(engine.config.prepare_window):
            await ticket.released.wait()
    finally:
        with trio.CancelScope(shield=True):
            await discard_prepared(engine, container, ticket)


async def _cgroup_for(engine: Engine, container: Container, spare: Spare | None) -> Cgroup | None:
    """The spare's cgroup with the container's limits written, else a new one; None to prepare nothing."""
    if spare is not None:
        try:
            spare.cgroup.update(container.spec.resources)
            return spare.cgroup
        except Exception as err:  # noqa: BLE001 - e.g. a memory limit below what the spare uses: fork afresh
            log.info("spare.unusable", id=container.id, error=str(err))
            await discard_spare(engine, spare)
    try:
        return engine.cgroups.create(engine.config.cgroup_parent, container.id, container.spec.resources)
    except Exception as err:  # noqa: BLE001 - the start will meet (and report) the same problem
        log.info("container.prepare_skipped", id=container.id, error=str(err))
        return None


async def take_prepared(engine: Engine, container: Container) -> tuple[Started, Cgroup] | None:
    """Start the container's prepared process, if it has one still true to its spec; None otherwise.

    The caller holds the container's lock. StartFailed if the parked process is gone (its cgroup
    is removed then).
    """
    ticket = await _claim(container, container.prepared)
    if ticket is None:
        return None
    if container.spec != ticket.spec or engine.host_resolv_conf() != ticket.resolv_conf:
        await _discard(engine, container, ticket)
        return None
    parked = ticket.parked
    if parked is not None and parked.go_fd is not None:
        try:
            # The start itself: its go byte, straight into its pipe. Its checks were made before it
            # parked, so like `runc start` this returns before the exec (a failing exec is exit 126/127).
            os.write(parked.go_fd, GO)
        except OSError:
            # It died parked (its pipe has no reader): gone the way a discard goes (which closes
            # its handles), then afresh.
            await _discard(engine, container, ticket)
            return None
        ticket.parked = None
        protocol.close_quietly(parked.go_fd)
        _release(container, ticket)
        log.info("container.started_prepared", id=container.id)
        return parked.started, ticket.cgroup
    _release(container, ticket)
    try:
        with trio.CancelScope(shield=True):
            started = await engine.launcher.go(container.id)
    except NotPrepared:
        await _remove_cgroup(ticket.cgroup)
        return None
    except BaseException:
        await _remove_cgroup(ticket.cgroup)
        raise
    log.info("container.started_prepared", id=container.id)
    return started, ticket.cgroup


async def discard_prepared(engine: Engine, container: Container, ticket: Prepared | None = None) -> None:
    """Kill the container's parked process (or `ticket`'s) and remove its cgroup; returns once both are gone."""
    claimed = await _claim(container, ticket or container.prepared)
    if claimed is not None:
        await _discard(engine, container, claimed)


async def _claim(container: Container, ticket: Prepared | None) -> Prepared | None:
    """`ticket`, now ours to start or discard; None if there is none (any discard of it has finished)."""
    if ticket is None:
        return None
    await ticket.done.wait()
    if ticket.claimed:
        await ticket.released.wait()
        return None
    if not ticket.ready:
        return None
    ticket.claimed = True
    return ticket


def _release(container: Container, ticket: Prepared) -> None:
    if container.prepared is ticket:
        container.prepared = None
    ticket.released.set()


async def _discard(engine: Engine, container: Container, ticket: Prepared) -> None:
    if ticket.parked is not None:
        ticket.parked.close()
        ticket.parked = None
    with trio.CancelScope(shield=True):
        try:
            try:
                await engine.launcher.discard(container.id)
            except (LauncherLost, RuntimeError) as err:
                log.warning("container.discard_failed", id=container.id, error=str(err))
            await _remove_cgroup(ticket.cgroup)
        finally:
            _release(container, ticket)


async def _remove_cgroup(cgroup: Cgroup) -> None:
    with trio.CancelScope(shield=True):
        # remove() retries briefly while v1 tears a cgroup down, so keep it off the event loop.
        await trio.to_thread.run_sync(cgroup.remove)

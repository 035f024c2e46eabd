"""The engine: the containers the daemon manages and the operations on them.

One `Engine` per daemon, opened with `open_engine`, which owns a nursery
holding one supervision task per running container. Each operation lives
in its own module (create, start, supervise, stop, remove, wait) and takes
the engine; this class holds what they share and is the reactor's public
surface for the API.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from supervisor.errors import NotModified
from supervisor.isolation.capabilities import host_bounding_set
from supervisor.isolation.cgroups.interface import CgroupDriver
from supervisor.isolation.launcher.client import LauncherClient
from supervisor.reactor.container import Container
from supervisor.reactor.create import create_container
from supervisor.reactor.events import Event, EventBus, container_attributes
from supervisor.reactor.exec_instances import ExecConfig, ExecInstance, ExecStore, create_exec, start_exec
from supervisor.reactor.execs import ExecProcess
from supervisor.reactor.images import ImageGuard, collect_garbage
from supervisor.reactor.inotify import InotifyHub
from supervisor.reactor.model import ContainerSpec
from supervisor.reactor.orphans import Reaper
from supervisor.reactor.pause import pause_container, unpause_container
from supervisor.reactor.reconcile import Reconciler
from supervisor.reactor.registry import Registry
from supervisor.reactor.remove import remove_container
from supervisor.reactor.rename import rename_container
from supervisor.reactor.restore import restore_containers
from supervisor.reactor.spare import SpareSlot, keep_spare
from supervisor.reactor.start import start_or_autoremove
from supervisor.reactor.state import StateStore
from supervisor.reactor.stats import container_stats
from supervisor.reactor.stop import kill_container, stop_container
from supervisor.reactor.top import ProcessList, container_top
from supervisor.reactor.tty import resize_tty
from supervisor.reactor.volumes import Volumes
from supervisor.reactor.wait import Condition, WaitResult, waiter
from supervisor.storage.images import ImageStore
from supervisor.storage.volumes import VOLUMES_DIR

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    root: Path
    run_dir: Path
    cgroup_parent: str = "corral"
    # Seconds a prepared process waits for its container's start; 0 prepares nothing (reactor/prepare.py).
    prepare_window: float = 10.0


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        images: ImageStore,
        cgroups: CgroupDriver,
        launcher: LauncherClient,
        nursery: trio.Nursery,
    ) -> None:
        self.config = config
        self.images = images
        self.cgroups = cgroups
        self.launcher = launcher
        self.nursery = nursery
        self.events = EventBus()
        self.inotify = InotifyHub()
        self.reaper = Reaper()
        self.registry = Registry()
        self.store = StateStore(config.root / "containers")
        self.volumes = Volumes(config.root / VOLUMES_DIR, self.registry, self.events)
        self.execs = ExecStore()
        # Image deletions vs. creations in flight (reactor/images.py).
        self.image_guard = ImageGuard()
        self.rng = random.Random()
        self.host_capabilities = host_bounding_set()
        self.started_at = time.time()
        # Set while the daemon stops its containers on the way out: no restart policy applies then.
        self.shutting_down = False
        # The next create's ID, cgroup and process, made ahead (reactor/spare.py).
        self.spare = SpareSlot()
        self.reconciler: Reconciler | None = None
        self._reconciler_scope: trio.CancelScope | None = None

    def get(self, ref: str) -> Container:
        return self.registry.get(ref)

    async def create(self, spec: ContainerSpec, name: str | None = None) -> Container:
        return await create_container(self, spec, name)

    async def start(self, ref: str) -> Container:
        container = self.get(ref)
        await start_or_autoremove(self, container)
        return container

    async def stop(self, ref: str, timeout: int | None = None, signal_name: str | None = None) -> None:
        await stop_container(self, self.get(ref), timeout, signal_name)

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        """Docker's restart: stop (if running), then start; a `restart` event after the start."""
        container = self.get(ref)
        try:
            await stop_container(self, container, timeout)
        except NotModified:
            pass
        await start_or_autoremove(self, container)
        self.events.publish(Event("container", "restart", container.id, container_attributes(container)))

    async def use_configs(self, directory: Path) -> Reconciler:
        """Converge on `directory` from now on (replacing any earlier one); returns after the first pass."""
        if self.reconciler is not None and self.reconciler.directory == directory:
            await self.reconciler.reconcile()
            return self.reconciler
        if self._reconciler_scope is not None:
            self._reconciler_scope.cancel()
        reconciler = Reconciler(self, directory)
        self.reconciler = reconciler
        self._reconciler_scope = await self.nursery.start(_run_reconciler, reconciler)
        return reconciler

    async def stop_all(self) -> None:
        """Stop every running container at once, each with its own signal and timeout (daemon shutdown).

        Not a manual stop: the restart policies apply again when the daemon comes back, as under Docker.
        """
        self.shutting_down = True

        async def stop_and_settle(container: Container) -> None:
            await stop_container(self, container, manual=False)
            # The exit's clean-up (cgroup, launcher `forget`) holds the lock: let it finish first.
            async with container.lock:
                pass

        async with trio.open_nursery() as nursery:
            for container in self.registry:
                if container.state.running:
                    nursery.start_soon(stop_and_settle, container)

    async def rename(self, ref: str, new_name: str) -> None:
        await rename_container(self, self.get(ref), new_name)

    def stats(self, ref: str, *, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        return container_stats(self.get(ref), stream=stream, one_shot=one_shot)

    async def pause(self, ref: str) -> None:
        await pause_container(self, self.get(ref))

    async def unpause(self, ref: str) -> None:
        await unpause_container(self, self.get(ref))

    async def top(self, ref: str, ps_args: str = "") -> ProcessList:
        return await container_top(self.get(ref), ps_args)

    async def kill(self, ref: str, signal_name: str | None = None) -> None:
        await kill_container(self, self.get(ref), signal_name)

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        await remove_container(self, self.get(ref), force=force, volumes=volumes)

    def resize(self, ref: str, height: int, width: int) -> None:
        resize_tty(self.get(ref), height, width)

    def create_exec(self, ref: str, config: ExecConfig) -> ExecInstance:
        return create_exec(self, self.get(ref), config)

    def get_exec(self, exec_id: str) -> ExecInstance:
        return self.execs.get(exec_id)

    async def start_exec(
        self, exec_id: str, *, detach: bool, console_size: tuple[int, int] | None = None
    ) -> ExecProcess:
        return await start_exec(self, self.get_exec(exec_id), detach=detach, console_size=console_size)

    def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        self.get_exec(exec_id).resize(height, width)

    def waiter(self, ref: str, condition: Condition) -> Callable[[], Awaitable[WaitResult]]:
        return waiter(self.get(ref), condition)

    def containers(self) -> list[Container]:
        return sorted(self.registry, key=lambda c: c.created, reverse=True)

    def host_resolv_conf(self) -> str:
        try:
            return Path("/etc/resolv.conf").read_text()
        except OSError:
            return ""


async def _run_reconciler(reconciler: Reconciler, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    """Run `reconciler` under a scope the engine can cancel; started once its first pass is done."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(reconciler.run)
            task_status.started(scope)


@asynccontextmanager
async def open_engine(
    config: EngineConfig, *, images: ImageStore, cgroups: CgroupDriver, launcher: LauncherClient
) -> AsyncIterator[Engine]:
    async with trio.open_nursery() as nursery:
        engine = Engine(config, images=images, cgroups=cgroups, launcher=launcher, nursery=nursery)
        nursery.start_soon(engine.inotify.run)
        nursery.start_soon(engine.reaper.run)
        await restore_containers(engine)
        # Crash leftovers and unreferenced content go; restored containers' images stay.
        await collect_garbage(engine, at_start=True)
        nursery.start_soon(keep_spare, engine)
        try:
            yield engine
        finally:
            # Live restore: containers keep running; their supervision tasks end with the daemon.
            nursery.cancel_scope.cancel()

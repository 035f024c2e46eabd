"""Converging on the configs directory: create what is new, recreate what changed, remove what went.

One `Reconciler` per daemon with a configs directory. A pass loads the
directory (each file on its own; a bad file holds its containers as they
are), then for every container in dependency order: unchanged (same
fingerprint label) is left alone, same pid; new or changed is (re)created
and started by a task of its own once its dependencies reach their
conditions; and config-made containers whose config is gone are stopped
and removed. Containers made through the API are never touched. Passes
run at start, on `reload` (API, `corral reload`, SIGHUP) and when the
directory or an env file changes (inotify, debounced), one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import CorralError, NotModified
from supervisor.reactor.config import ConfigSet, Dependency, StartStep, load_dir
from supervisor.reactor.container import Container
from supervisor.reactor.desired import fingerprint_of, is_managed, spec_from_config
from supervisor.reactor.inotify import DIRECTORY_CHANGES, FileWatch
from supervisor.timestamps import ZERO_TIME

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# Editors write a file in steps (truncate, write, rename): wait for them to finish.
DEBOUNCE = 0.2


@dataclass
class Pending:
    """A container being (re)created: its fingerprint, and what it still waits for."""

    fingerprint: str
    scope: trio.CancelScope
    waiting_for: tuple[Dependency, ...] = ()


@dataclass
class Reconciler:
    engine: Engine
    directory: Path
    config_set: ConfigSet | None = None
    load_error: str = ""
    passes: int = 0
    apply_errors: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    _wake: trio.Event = field(default_factory=trio.Event)
    _lock: trio.Lock = field(default_factory=trio.Lock)

    def request(self) -> None:
        """Ask for a pass soon (reload)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            with ExitStack() as stack:
                watches = list(self._watch(stack))
                await self.reconcile()
                if not started:
                    task_status.started()
                    started = True
                async with trio.open_nursery() as nursery:
                    for watch in watches:
                        nursery.start_soon(_wake_on, watch.wait, nursery.cancel_scope)
                    nursery.start_soon(_wake_on, self._wake.wait, nursery.cancel_scope)
            self._wake = trio.Event()
            await trio.sleep(DEBOUNCE)

    def _watch(self, stack: ExitStack) -> Iterator[FileWatch]:
        hub = self.engine.inotify
        try:
            yield stack.enter_context(hub.watch(self.directory, DIRECTORY_CHANGES))
        except FileNotFoundError:
            pass
        env_files = {p for c in (self.config_set.containers if self.config_set else ()) for p in c.env_files}
        for path in sorted(env_files):
            try:
                yield stack.enter_context(hub.watch(path))
            except FileNotFoundError:
                continue

    async def reconcile(self) -> None:
        async with self._lock:
            self.passes += 1
            try:
                config_set = await trio.to_thread.run_sync(load_dir, self.directory)
            except OSError as err:
                self.load_error = f"cannot read {self.directory}: {err.strerror or err}"
                log.error("configs.unreadable", directory=str(self.directory), error=self.load_error)
                return
            self.load_error = ""
            self.config_set = config_set
            for error in config_set.errors:
                log.warning("configs.invalid", error=str(error))
            self._remove_unwanted(config_set)
            for step in config_set.start_order():
                self._apply(step)
            log.info("configs.reconciled", containers=len(config_set.containers), errors=len(config_set.errors))

    def _remove_unwanted(self, config_set: ConfigSet) -> None:
        wanted = {c.name for c in config_set.containers} | config_set.held
        for container in self.engine.registry:
            if is_managed(container.spec) and container.name not in wanted and not container.removing:
                pending = self.pending.pop(container.name, None)
                if pending is not None:
                    pending.scope.cancel()
                self.apply_errors.pop(container.name, None)
                log.info("configs.container_removed", name=container.name)
                self.engine.nursery.start_soon(self._stop_and_remove, container)
        for name in list(self.pending):
            if name not in wanted:
                self.pending.pop(name).scope.cancel()

    def _apply(self, step: StartStep) -> None:
        config = step.container
        fingerprint = config.fingerprint()
        existing = self.engine.registry.by_name(config.name)
        if existing is not None and not is_managed(existing.spec):
            self.apply_errors[config.name] = (
                f"a container named {config.name!r} exists that was not made from configs; remove or rename it"
            )
            return
        pending = self.pending.get(config.name)
        if pending is not None:
            if pending.fingerprint == fingerprint:
                return
            pending.scope.cancel()
        elif existing is not None and fingerprint_of(existing.spec) == fingerprint:
            return
        scope = trio.CancelScope()
        self.pending[config.name] = Pending(fingerprint, scope, step.waits_for)
        self.engine.nursery.start_soon(self._create_when_ready, step, scope)

    async def _create_when_ready(self, step: StartStep, scope: trio.CancelScope) -> None:
        config = step.container
        with scope:
            try:
                await self.engine.registry.changed.wait_until(lambda: self._dependencies_met(step))
                old = self.engine.registry.by_name(config.name)
                if old is not None:
                    log.info("configs.container_changed", name=config.name)
                    await self._stop_and_remove(old)
                spec = spec_from_config(config)
                container = await self.engine.create(spec, config.name)
                await self.engine.start(container.id)
                self.apply_errors.pop(config.name, None)
                log.info("configs.container_applied", name=config.name, id=container.id)
            except CorralError as err:
                self.apply_errors[config.name] = str(err)
                log.warning("configs.container_failed", name=config.name, error=str(err))
            finally:
                current = self.pending.get(config.name)
                if current is not None and current.scope is scope:
                    del self.pending[config.name]

    def _dependencies_met(self, step: StartStep) -> bool:
        return all(_condition_met(self.engine.registry.by_name(dep.name), dep) for dep in step.waits_for)

    async def _stop_and_remove(self, container: Container) -> None:
        try:
            await self.engine.stop(container.id)
        except (NotModified, CorralError):
            pass
        try:
            # Its anonymous volumes go with it (named volumes stay): each recreation would leave more.
            await self.engine.remove(container.id, force=True, volumes=True)
        except CorralError as err:
            log.warning("configs.remove_failed", name=container.name, error=str(err))


def _condition_met(container: Container | None, dependency: Dependency) -> bool:
    if container is None or container.removing:
        return False
    state = container.state
    has_started = state.started_at != ZERO_TIME
    if dependency.condition == "started":
        return has_started
    if dependency.condition == "completed_successfully":
        return state.status == "exited" and state.exit_code == 0 and has_started
    # healthy: a dependency without a health check counts once it runs, as it can never report more.
    if container.spec.health is None:
        return state.status == "running"
    return state.status == "running" and state.health is not None and state.health.status == "healthy"


async def _wake_on(wait: object, cancel_scope: trio.CancelScope) -> None:
    await wait()  # type: ignore[operator]
    cancel_scope.cancel()

"""`rename`: a container takes a new name; its ID, hostname and everything else stay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, InvalidArgument
from supervisor.reactor.container import Container
from supervisor.reactor.desired import SOURCE_LABEL, is_managed
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.names import validate_name

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


async def rename_container(engine: Engine, container: Container, new_name: str) -> None:
    """moby's rules: a valid name, not the current one, not in use (409). The config file holds the
    name, so it is written (synced, before and after its rename) before the name index changes: a
    crash or a power cut keeps one name or the other."""
    if not new_name:
        raise InvalidArgument("Neither old nor new names may be empty")
    name = validate_name(new_name)
    # The lock keeps two renames of one container (or a start reading its files) apart.
    async with container.lock:
        old = container.name
        if name == old:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        if is_managed(container.spec):
            # The reconciler knows it by name: renamed, it would be replaced and then removed.
            raise Conflict(f"container {old} is declared in {container.spec.labels[SOURCE_LABEL]}: rename it there")
        _refuse_removed(container, old)
        engine.registry.reserve_name(name, container.id)
        try:
            if container.config_synced is not None:
                await container.config_synced.wait()
            try:
                await trio.to_thread.run_sync(_write_config, engine, container, name)
            except FileNotFoundError:
                _refuse_removed(container, old)  # its directory went with it
                raise
            # A removal does not take the lock: it may have begun (or ended) meanwhile.
            _refuse_removed(container, old)
        except BaseException:
            engine.registry.release_name(name)
            raise
        container.name = name
        engine.registry.release_name(old)
    log.info("container.renamed", id=container.id, old=old, name=name)
    attributes = container_attributes(container, oldName=f"/{old}")
    engine.events.publish(Event("container", "rename", container.id, attributes))
    engine.registry.changed.notify()


def _refuse_removed(container: Container, old: str) -> None:
    if container.removing or container.removed:
        raise Conflict(f"Cannot rename container {old}: it is being removed")


def _write_config(engine: Engine, container: Container, name: str) -> None:
    engine.store.rewrite_config(container.id, name, container.created, container.spec)

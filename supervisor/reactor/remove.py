"""`rm`: refuse a running container unless forced; then delete everything it had."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.images import release_image
from supervisor.reactor.prepare import discard_prepared
from supervisor.reactor.stop import force_stop
from supervisor.storage.snapshots import remove_snapshot

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


async def remove_container(engine: Engine, container: Container, *, force: bool = False, volumes: bool = False) -> None:
    """`volumes` (`rm -v`) also removes the container's anonymous volumes, as does an `--rm` container's removal."""
    if container.removed:
        return
    if container.removing:
        raise Conflict(f"removal of container {container.id} is already in progress")
    if container.state.running and not force:
        raise Conflict(
            f"You cannot remove a running container {container.id}. "
            "Stop the container before attempting removal or force remove"
        )
    container.removing = True
    container.cancel_restart()
    try:
        await discard_prepared(engine, container)
        await force_stop(container)
        engine.registry.discard(container)
        container.mark_removed()
        await trio.to_thread.run_sync(_delete_files, engine, container)
    finally:
        container.removing = False
    engine.events.publish(Event("container", "destroy", container.id, container_attributes(container)))
    release_image(engine, container.spec.image_id)
    if volumes or container.spec.auto_remove:
        await engine.volumes.remove_anonymous(container.spec)


def _delete_files(engine: Engine, container: Container) -> None:
    remove_snapshot(container.files.dir)
    engine.store.delete(container.id)

"""`rm`: refuse a running container unless forced; then delete everything it had.

In two steps: `retire_container` is all a client sees (the container gone
from the API, its name free, its directory renamed out of the store, so a
crash cannot bring it back), `delete_retired` deletes its files. A plain
`rm` runs both; an `--rm` container's exit (reactor/supervise.py) runs the
second a moment after the first, once the client that waited for the
removal has been answered.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.images import release_image
from supervisor.reactor.prepare import discard_prepared
from supervisor.reactor.spare import STAGING_PREFIX
from supervisor.reactor.state import RETIRED_PREFIX
from supervisor.reactor.stop import force_stop
from supervisor.storage.snapshots import remove_snapshot

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# How long an `--rm` container's clean-up waits after its removal was answered: the docker CLI
# exits within a few ms of that answer, and would otherwise share the CPU with the clean-up.
REMOVAL_GRACE = 0.05


async def remove_container(engine: Engine, container: Container, *, force: bool = False, volumes: bool = False) -> None:
    """`volumes` (`rm -v`) also removes the container's anonymous volumes, as does an `--rm` container's removal."""
    if await retire_container(engine, container, force=force, volumes=volumes):
        await delete_retired(engine, container)


async def retire_container(
    engine: Engine, container: Container, *, force: bool = False, volumes: bool = False
) -> bool:
    """All of a removal that clients see: the container stopped and gone from the API, its name free,
    its directory out of the store, its anonymous volumes gone with it if `volumes` or `--rm` say
    so; False if it was removed already. Its files are still there, for `delete_retired`."""
    if container.removed:
        return False
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
        engine.store.retire(container.id)
        if volumes or container.spec.auto_remove:
            # Before the answer: `docker run --rm` and `rm -v` return with them gone, as under Docker.
            await engine.volumes.remove_anonymous(container.spec)
        container.mark_removed()
    finally:
        container.removing = False
    engine.events.publish(Event("container", "destroy", container.id, container_attributes(container)))
    return True


async def delete_retired(engine: Engine, container: Container) -> None:
    """The rest of a removal: the retired container's files, and its image's if `rmi -f` left it to us."""
    await trio.to_thread.run_sync(_delete_files, engine.store.retired_dir(container.id))
    release_image(engine, container.spec.image_id)


async def delete_leftovers(engine: Engine) -> None:
    """At daemon start: the files of containers retired by a daemon that died before deleting them,
    and its spare's staging dir (reactor/spare.py)."""
    for leftover in engine.store.leftovers(RETIRED_PREFIX, STAGING_PREFIX):
        await trio.to_thread.run_sync(_delete_files, leftover)
        log.info("container.leftovers_deleted", dir=str(leftover))


def _delete_files(retired: Path) -> None:
    remove_snapshot(retired)
    shutil.rmtree(retired, ignore_errors=True)

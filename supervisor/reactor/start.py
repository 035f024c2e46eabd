"""`start` as a user asks for it: checks, then launch, then a supervision task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from supervisor.errors import Conflict, NotFound, NotModified
from supervisor.reactor.container import Container
from supervisor.reactor.launch import launch
from supervisor.reactor.remove import remove_container
from supervisor.reactor.supervise import supervise

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine


async def start_container(engine: Engine, container: Container) -> None:
    """A start asked for by a user: it clears a manual stop and the restart count, as Docker's does."""
    async with container.lock:
        if container.removed:
            raise NotFound(f"No such container: {container.id}")
        if container.state.status == "restarting":
            raise NotModified("container is restarting")
        if container.state.status == "paused":
            raise Conflict("cannot start a paused container, try unpause instead")
        if container.state.running:
            raise NotModified("container already started")
        container.backoff = None
        if container.config_synced is not None:
            await container.config_synced.wait()
        await launch(engine, container, restart=False)
    engine.nursery.start_soon(supervise, engine, container)


async def start_or_autoremove(engine: Engine, container: Container) -> None:
    """Start; if that fails for an `--rm` container, remove it as Docker does.

    Whatever the failure: after a failed start, `docker run --rm` waits for the removal.
    """
    try:
        await start_container(engine, container)
    except Exception:
        if container.spec.auto_remove and not container.state.running:
            with trio.CancelScope(shield=True):
                await remove_container(engine, container, force=True)
        raise

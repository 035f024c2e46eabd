"""`create`: resolve the image, merge its config, reserve the name, lay out the container's files."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import InvalidArgument
from supervisor.isolation.capabilities import resolve_capabilities
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.model import ContainerSpec, ContainerState, merge_image_config
from supervisor.reactor.names import generate_name, validate_name
from supervisor.reactor.prepare import discard_prepared, prepare
from supervisor.reactor.spare import Spare, discard_spare
from supervisor.storage.images import Image
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


def _validate(engine: Engine, spec: ContainerSpec) -> None:
    spec.resources.validate()
    wanted = resolve_capabilities(spec.cap_add, spec.cap_drop)
    missing = wanted - engine.host_capabilities
    if missing:
        raise InvalidArgument(f"capabilities not available on this host: {', '.join(sorted(missing))}")
    if not spec.args:
        raise InvalidArgument("No command specified")
    if spec.restart_policy.name != "no" and spec.auto_remove:
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


async def create_container(engine: Engine, requested: ContainerSpec, name: str | None) -> Container:
    # Pinned from lookup to registration, so no `rmi`/GC takes the image in between (reactor/images.py).
    async with engine.image_guard.pinned():
        return await _create_container(engine, requested, name)


async def _create_container(engine: Engine, requested: ContainerSpec, name: str | None) -> Container:
    image = engine.images.resolve(requested.image)
    # A spare (reactor/spare.py) is this create's to discard until the prepare task has it.
    spare = engine.spare.take()
    try:
        return await _create_as(engine, requested, name, image, spare)
    except BaseException:
        if spare is not None and not spare.handed_over:
            await discard_spare(engine, spare)
        raise


async def _create_as(
    engine: Engine, requested: ContainerSpec, name: str | None, image: Image, spare: Spare | None
) -> Container:
    container_id = spare.id if spare is not None else secrets.token_hex(32)
    spec = merge_image_config(replace(requested, image_id=image.id), image.config)
    if not spec.hostname:
        spec = replace(spec, hostname=container_id[:12])
    _validate(engine, spec)
    name = validate_name(name) if name else generate_name(engine.rng, engine.registry.names())
    engine.registry.reserve_name(name, container_id)
    files = engine.store.files(container_id)
    container: Container | None = None
    # The container's volumes stay claimed until it is registered (then its spec tells who uses them).
    async with engine.volumes.claim() as claim:
        try:
            # Unpack missing layers now, so start stays fast and a bad layer fails the create.
            layers = engine.images.unpacked_layer_dirs(image)
            if layers is None:
                layers = await trio.to_thread.run_sync(engine.images.layer_dirs, image)
            spec = await engine.volumes.prepare(spec, image.config, layers, claim)
            if spare is None or not spare.take_dir(files.dir, layers):
                files.lay_out()
            engine.spare.last_layers = tuple(layers)
            created = now_rfc3339()
            # No state file yet: a missing one reads as this fresh state (StateStore.load_all).
            container = Container(
                container_id, name, created, spec, ContainerState(), engine.store,
                on_change=engine.registry.changed.notify,
            )  # fmt: skip
            # Written and renamed: a daemon crash keeps it. Its fsync follows in a worker thread
            # while the client goes on to its start, which waits for it (start.py): no container
            # runs on a config a power cut could lose. None for an `--rm` one: a power cut ends
            # its run, and the restore after removes it (its state still says running).
            engine.store.save_config(container_id, name, created, spec)
            if not spec.auto_remove:
                container.config_synced = trio.Event()
                engine.nursery.start_soon(_sync_config, engine, container, container.config_synced)
            # Its process is forked and set up meanwhile (reactor/prepare.py).
            engine.nursery.start_soon(prepare, engine, container, spare)
            if spare is not None:
                spare.handed_over = True
        except BaseException:
            with trio.CancelScope(shield=True):
                if container is not None:
                    container.mark_removed()
                    await discard_prepared(engine, container)
            engine.registry.release_name(name)
            engine.store.delete(container_id)
            raise
        engine.registry.add(container)
    engine.events.publish(Event("container", "create", container_id, container_attributes(container)))
    return container


async def _sync_config(engine: Engine, container: Container, synced: trio.Event) -> None:
    try:
        await trio.to_thread.run_sync(engine.store.sync_config, container.id)
    except OSError as err:
        if not container.removed:
            log.error("container.config_sync_failed", id=container.id, error=str(err))
    finally:
        synced.set()

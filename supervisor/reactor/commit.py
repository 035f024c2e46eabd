"""`diff`, `commit` and `import` on the engine: the container's files and image, pausing, events.

Commit, as Docker's: the container (running or not) is frozen for the
duration unless `pause` is false (its cgroup's freezer; thawed however the
commit ends), the upper dir becomes a layer on the container's image, the
image config comes from the container's config with the request's config
and `--change` instructions applied, and the events are Docker's:
`pause`, image `tag`, container `commit` (comment, imageID, imageRef),
`unpause`. The container's lock is held throughout, so no start (which may
build its init layer) or exit clean-up (which removes the cgroup)
interleaves; the image guard pins the base image against `rmi`/GC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

from supervisor.errors import Conflict, InvalidArgument
from supervisor.reactor.container import Container
from supervisor.reactor.events import Event, container_attributes
from supervisor.reactor.image_delete import image_labels
from supervisor.reactor.initlayer import container_lowers
from supervisor.reactor.model import ContainerSpec, HealthCheck
from supervisor.storage.changes import Change, container_changes
from supervisor.storage.commit import commit_config, new_ingest_file, store_commit
from supervisor.storage.images import Image
from supervisor.storage.importer import import_config, import_layer
from supervisor.storage.reference import parse_reference
from supervisor.storage.snapshots import snapshot_paths
from supervisor.timestamps import now_rfc3339

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)

# Committed layers are stored as plain tars, as Docker keeps layers locally (bench/commit.py:
# gzip, even at level 1, costs several times the tar itself); a push compresses.
COMMIT_COMPRESS_LEVEL: int | None = None
_WRITE_CHUNK = 1 << 20


@dataclass(frozen=True)
class CommitOptions:
    repo: str = ""  # "" leaves the image untagged
    tag: str = ""  # "" means latest (with a repo)
    author: str = ""
    comment: str = ""
    pause: bool = True
    changes: tuple[str, ...] = ()
    # The request body: a partial container Config (Cmd, Env, ...); None or {} when absent.
    config: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ImportOptions:
    repo: str = ""
    tag: str = ""
    message: str = ""
    changes: tuple[str, ...] = ()
    source: str = "-"  # for the default message, "Imported from -"


def target_reference(repo: str, tag: str) -> str | None:
    """Docker's RepoTagReference: `repo` with `tag` (which wins over a tag in `repo`), else latest."""
    if not repo:
        return None
    ref = parse_reference(repo)
    if ref.digest is not None:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    if tag:
        return parse_reference(f"{ref.familiar}:{tag}").familiar_with_tag
    return ref.familiar_with_tag


async def diff_container(engine: Engine, ref: str) -> list[Change]:
    container = engine.get(ref)
    return await trio.to_thread.run_sync(_changes, engine, container)


def _changes(engine: Engine, container: Container) -> list[Change]:
    return container_changes(snapshot_paths(container.files.dir).upper, _lowers(engine, container))


def _lowers(engine: Engine, container: Container) -> list[Path]:
    return container_lowers(container.files.dir, engine.images.container_layers(container.spec.image_id))


async def commit_container(engine: Engine, ref: str, options: CommitOptions) -> Image:
    container = engine.get(ref)
    target = target_reference(options.repo, options.tag)
    async with engine.image_guard.pinned(), container.lock:
        if container.removed or container.removing:
            raise Conflict(f"Cannot commit container {container.id}: it is being removed")
        base = await trio.to_thread.run_sync(engine.images.container_image, container.spec.image_id)
        created = now_rfc3339()
        container_config = docker_container_config(container.spec, base.config)
        # Built (and the --change instructions checked) before anything is paused or written.
        config = commit_config(
            base=base.config,
            container_config=container_config,
            request_config=options.config,
            changes=options.changes,
            container_id=container.id,
            author=options.author,
            comment=options.comment,
            created=created,
        )
        cgroup = container.cgroup if options.pause and container.state.status == "running" else None
        if cgroup is not None:
            frozen = await trio.to_thread.run_sync(cgroup.freeze)
            if not frozen:
                log.warning("container.commit_freeze_timeout", id=container.id)
            engine.events.publish(Event("container", "pause", container.id, container_attributes(container)))
        try:
            image = await trio.to_thread.run_sync(
                lambda: store_commit(
                    engine.images,
                    snapshot_paths(container.files.dir).upper,
                    base,
                    config,
                    created_by=" ".join(container_config.get("Cmd") or ()),
                    tags=[target] if target else [],
                    compress_level=COMMIT_COMPRESS_LEVEL,
                )
            )
            if target:
                engine.events.publish(Event("image", "tag", image.id, {**image_labels(image), "name": target}))
            attributes = container_attributes(
                container, comment=options.comment, imageID=image.id, imageRef=target or ""
            )
            engine.events.publish(Event("container", "commit", container.id, attributes))
        finally:
            if cgroup is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(cgroup.thaw)
                engine.events.publish(Event("container", "unpause", container.id, container_attributes(container)))
    log.info("container.committed", id=container.id, image=image.id, ref=target)
    return image


async def import_image(engine: Engine, body: AsyncIterator[bytes], options: ImportOptions) -> Image:
    """A one-layer image from a rootfs tarball (plain or gzip) arriving in `body`."""
    target = target_reference(options.repo, options.tag)
    config = import_config(options.changes, options.message or f"Imported from {options.source}", now_rfc3339())
    # In the store's ingest dir: what a crash leaves there is removed at the next daemon start.
    path = await trio.to_thread.run_sync(new_ingest_file, engine.images, "import-")
    try:
        await _receive(body, path)
        image = await trio.to_thread.run_sync(
            lambda: import_layer(engine.images, path, config, [target] if target else [])
        )
    finally:
        await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
    # dockerd's order: the tag, then the import.
    if target:
        engine.events.publish(Event("image", "tag", image.id, {**image_labels(image), "name": target}))
    engine.events.publish(Event("image", "import", image.id, {**image_labels(image), "name": image.id}))
    return image


async def _receive(body: AsyncIterator[bytes], path: Path) -> None:
    """Write the request body to `path`, in big writes off the event loop."""
    with open(path, "wb") as out:
        pending: list[bytes] = []
        size = 0
        async for chunk in body:
            pending.append(chunk)
            size += len(chunk)
            if size >= _WRITE_CHUNK:
                data, pending, size = b"".join(pending), [], 0
                await trio.to_thread.run_sync(out.write, data)
        if pending:
            await trio.to_thread.run_sync(out.write, b"".join(pending))


def docker_container_config(spec: ContainerSpec, image_config: Mapping[str, Any]) -> dict[str, Any]:
    """The image-relevant part of Docker's container Config for `spec` (the image's defaults merged in)."""
    base = image_config.get("config") or {}
    stop_signal = spec.stop_signal or ""
    if stop_signal == "SIGTERM" and not base.get("StopSignal"):
        stop_signal = ""  # corral fills in the default at create; Docker's Config leaves it empty
    return {
        "Cmd": list(spec.cmd) if spec.cmd else None,
        "Entrypoint": list(spec.entrypoint) if spec.entrypoint else None,
        "Env": list(spec.env) or None,
        "WorkingDir": spec.working_dir,
        "User": spec.user,
        "Labels": dict(spec.labels),
        "ExposedPorts": base.get("ExposedPorts"),
        "Volumes": base.get("Volumes"),
        "StopSignal": stop_signal,
        "Healthcheck": _docker_healthcheck(spec.health) or base.get("Healthcheck"),
    }


def _docker_healthcheck(health: HealthCheck | None) -> dict[str, Any] | None:
    """Docker's Healthcheck object for an exec probe; corral's tcp/http probes have no Docker form."""
    if health is None or health.kind != "exec":
        return None
    argv = list(health.argv)
    test = ["CMD-SHELL", argv[2]] if len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"] else ["CMD", *argv]
    return {
        "Test": test,
        "Interval": int(health.interval * 1e9),
        "Timeout": int(health.timeout * 1e9),
        "StartPeriod": int(health.start_period * 1e9),
        "Retries": health.retries,
    }

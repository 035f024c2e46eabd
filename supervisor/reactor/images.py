"""Image management on the engine: tag, rmi, prune, garbage collection, and their events.

Which containers use an image comes from the registry (any state counts;
running ones are hard conflicts). Deletions run one at a time under the
engine's `ImageGuard`, which also waits out container creations in
flight: a create pins the images (resolve, unpack, register) so that no
deletion or collection can take an image between a create's lookup and
the container's record naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import trio

from supervisor.errors import Conflict, NotFound
from supervisor.reactor.events import Event
from supervisor.reactor.image_delete import ImageDeleter, Outcome, Users, image_labels
from supervisor.storage import gc
from supervisor.storage.images import Image
from supervisor.storage.reference import parse_reference
from supervisor.timestamps import parse_rfc3339_ns

if TYPE_CHECKING:
    from supervisor.reactor.engine import Engine

log = structlog.get_logger(__name__)


class ImageGuard:
    """Creations pin images (many at once); deletions take it exclusively, one at a time."""

    def __init__(self) -> None:
        self._pins = 0
        self._exclusive = False
        self._changed = trio.Event()

    @asynccontextmanager
    async def pinned(self) -> AsyncIterator[None]:
        while self._exclusive:
            await self._changed.wait()
        self._pins += 1
        try:
            yield
        finally:
            self._pins -= 1
            self._notify()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        while self._exclusive or self._pins:
            await self._changed.wait()
        self._exclusive = True
        try:
            yield
        finally:
            self._exclusive = False
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@dataclass(frozen=True)
class PruneFilter:
    """`image prune` filters: dangling (default true), until (ns), label / label! (Docker's)."""

    dangling_only: bool = True
    until_ns: int | None = None
    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()

    def matches(self, image: Image) -> bool:
        created = parse_rfc3339_ns(image.created) or 0
        if self.until_ns is not None and created > self.until_ns:
            return False
        labels = (image.config.get("config") or {}).get("Labels") or {}
        return all(_label_matches(labels, f) for f in self.labels) and not any(
            _label_matches(labels, f) for f in self.not_labels
        )


@dataclass(frozen=True)
class PruneReport:
    records: list[dict[str, str]]
    reclaimed: int


def container_users(engine: Engine) -> Users:
    """Every container's image ID, and whether the container is running (read on the event loop)."""
    by_image: dict[str, list[tuple[str, bool]]] = {}
    for container in engine.containers():
        if container.spec.image_id:
            by_image.setdefault(container.spec.image_id, []).append((container.id, container.state.running))
    return Users(by_image)


async def tag_image(engine: Engine, source: str, target: str) -> Image:
    image = await trio.to_thread.run_sync(engine.images.tag, source, target)
    name = parse_reference(target).familiar_with_tag
    _publish(engine, "tag", image.id, name, image_labels(image))
    return image


async def delete_image(engine: Engine, text: str, *, force: bool, prune: bool) -> list[dict[str, str]]:
    """Docker's `DELETE /images/{name}`: the Untagged/Deleted records, in Docker's order."""
    async with engine.image_guard.exclusive():
        deleter = ImageDeleter(engine.images, container_users(engine))
        try:
            await trio.to_thread.run_sync(lambda: deleter.delete(text, force=force, prune=prune))
        finally:
            # Whatever happened before a failure happened: report its events.
            _publish_outcome(engine, deleter.outcome)
        return deleter.outcome.records


async def prune_images(engine: Engine, prune_filter: PruneFilter) -> PruneReport:
    """Docker's `POST /images/prune`: dangling images (or all unused ones), then their content."""
    async with engine.image_guard.exclusive():
        deleter = ImageDeleter(engine.images, container_users(engine))
        try:
            await trio.to_thread.run_sync(_prune, deleter, prune_filter)
        finally:
            _publish_outcome(engine, deleter.outcome)
    outcome = deleter.outcome
    engine.events.publish(Event("image", "prune", "", {"reclaimed": str(outcome.reclaimed)}))
    return PruneReport(records=outcome.records, reclaimed=outcome.reclaimed)


async def collect_garbage(engine: Engine, *, at_start: bool = False) -> gc.Collected:
    """Free content no image and no container uses; at start, also what crashes left behind."""
    async with engine.image_guard.exclusive():
        keep = set(container_users(engine).by_image)
        work = gc.recover if at_start else gc.collect
        return await trio.to_thread.run_sync(work, engine.images, keep)


def release_image(engine: Engine, image_id: str) -> None:
    """After a container's removal: free its image's content if `rmi -f` deleted it meanwhile (in the background)."""
    if image_id and not any(c.spec.image_id == image_id for c in engine.registry):
        engine.nursery.start_soon(_release_held, engine, image_id)


async def _release_held(engine: Engine, image_id: str) -> None:
    held = await trio.to_thread.run_sync(engine.images.layout.read_held)
    if image_id in held:
        await collect_garbage(engine)


def _prune(deleter: ImageDeleter, prune_filter: PruneFilter) -> None:
    store = deleter.store
    images = store.list_images()
    parents = {image.parent for image in images if image.parent}
    for image in images:
        has_children = image.id in parents
        if prune_filter.dangling_only and has_children:
            continue  # only heads (images nothing was committed from)
        if not image.references and has_children:
            continue  # an intermediate image: it goes with its child
        if not prune_filter.matches(image):
            continue
        if image.references:
            if prune_filter.dangling_only and image.repo_tags:
                continue
            targets: Sequence[str] = image.references
        else:
            targets = [image.id.removeprefix("sha256:")]
        for target in targets:
            try:
                deleter.delete(target, force=False, prune=True)
            except (Conflict, NotFound) as err:
                # In use, or gone already with a child deleted before it: not an error for prune.
                log.debug("image.prune_skipped", image=target, reason=str(err))


def _publish_outcome(engine: Engine, outcome: Outcome) -> None:
    for action, image_id, name in outcome.events:
        _publish(engine, action, image_id, name, outcome.labels.get(image_id, {}))


def _publish(engine: Engine, action: str, image_id: str, name: str, labels: Mapping[str, str]) -> None:
    # Docker's image events: the image's labels, then its name (a ref for tag, the ID otherwise).
    engine.events.publish(Event("image", action, image_id, {**labels, "name": name}))


def _label_matches(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)

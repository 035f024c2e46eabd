"""`rmi` and `image prune` with Docker's rules (moby daemon/images/image_delete.go, image_prune.go).

Removing a reference (`rmi user/app:v1`) only untags, unless it was the
image's last one; then the image goes too, quietly: a conflict keeps it
(dangling) and is not reported. Removing by ID deletes the image with all
its references. Conflicts: hard ones (a running container uses the image,
or images were committed from it) are refused even with force; soft ones
(a stopped container uses it, it has references in several repositories)
need force. A reference whose image a container uses is not removed
without force while it is the image's only one, so that no container's
image is left dangling by accident. A container keeps working after its
image was deleted with force: GC keeps that image's config and unpacked
layers while a container uses it.

The functions here block on the disk: run them in a worker thread, with
the container snapshot (`Users`) taken on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from supervisor.errors import Conflict, NotFound
from supervisor.storage.gc import chain_ids, collect
from supervisor.storage.images import Image, ImageStore, image_content
from supervisor.storage.layers import layer_dir
from supervisor.storage.lookup import is_id_text
from supervisor.storage.reference import parse_reference

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Users:
    """Containers by the image ID they use: [(container id, running)], in registry order."""

    by_image: Mapping[str, Sequence[tuple[str, bool]]] = field(default_factory=dict)

    def first(self, image_id: str, *, running: bool | None = None) -> str | None:
        for container_id, is_running in self.by_image.get(image_id, ()):
            if running is None or running == is_running:
                return container_id
        return None


@dataclass
class Outcome:
    """What a delete did: Docker's response records, image events to publish, bytes freed."""

    records: list[dict[str, str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (action, image ID, name)
    reclaimed: int = 0
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # image ID -> its labels


class ImageDeleteConflict(Conflict):
    def __init__(self, image_id: str, message: str, *, hard: bool, used: bool = False) -> None:
        forced = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {_short(image_id)} ({forced}) - {message}")
        self.hard = hard
        self.used = used


class ImageDeleter:
    def __init__(self, store: ImageStore, users: Users) -> None:
        self.store = store
        self.users = users
        self.outcome = Outcome()

    def delete(self, text: str, *, force: bool, prune: bool) -> None:
        """Docker's ImageDelete for one name or ID; records accumulate in `self.outcome`."""
        image = self.store.resolve(text)
        image_id = image.id
        self.outcome.labels[image_id] = image_labels(image)
        quiet = False
        if not is_id_text(image_id, text):
            if not force and is_single_reference(image.references):
                user = self.users.first(image_id)
                if user is not None:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{text}" (must force) - '
                        f"container {_short(user)} is using its referenced image {_short(image_id)}"
                    )
            ref = parse_reference(text)
            self._untag(image_id, ref.familiar_with_tag)
            remaining = self._references(image_id)
            if ref.digest is None and not any(_name(r) == ref.name and "@" not in r for r in remaining):
                # The repository's last tag went: its digest references go with it.
                for other in [r for r in remaining if "@" in r and _name(r) == ref.name]:
                    self._untag(image_id, other)
                remaining = self._references(image_id)
            if remaining:
                return
            quiet = True
        elif is_single_reference(image.references):
            self._check(image_id, hard=True, stopped=not force)
            for name in image.references:
                self._untag(image_id, name)
        self._delete_image(image_id, force=force, prune=prune, quiet=quiet)

    def _delete_image(self, image_id: str, *, force: bool, prune: bool, quiet: bool) -> None:
        try:
            self._check(image_id, hard=True, references=not force, stopped=not force)
        except ImageDeleteConflict as conflict:
            if quiet and (not self._dangling(image_id) or conflict.used):
                return
            raise
        for name in self._references(image_id):
            self._untag(image_id, name)
        # A container using it (force) keeps its content, as Docker's layer references do.
        image = self.store.remove_image(image_id, hold=self.users.first(image_id) is not None)
        self.outcome.labels.setdefault(image_id, image_labels(image))
        self.outcome.records.append({"Deleted": image_id})
        self.outcome.events.append(("delete", image_id, image_id))
        self._collect(image)
        if prune and image.parent:
            try:
                self._delete_image(image.parent, force=False, prune=True, quiet=True)
            except NotFound:
                pass

    def _collect(self, image: Image) -> None:
        """Free the image's content nothing else uses; one `Deleted` record per freed layer, top first."""
        keep = set(self.users.by_image)
        collected = collect(self.store, keep, expected=image_content(image))
        freed_blobs, freed_layers = set(collected.blobs), set(collected.layers)
        layers = zip(image.diff_ids, image.layer_digests, image.layer_sizes, chain_ids(image.diff_ids), strict=True)
        for diff_id, blob, size, chain_id in reversed(list(layers)):
            gone = not layer_dir(self.store.layers_root, diff_id).exists()
            if diff_id in freed_layers or (blob in freed_blobs and gone):
                self.outcome.records.append({"Deleted": chain_id})
                self.outcome.reclaimed += size

    def _check(self, image_id: str, *, hard: bool, references: bool = False, stopped: bool = False) -> None:
        """Docker's checkImageDeleteConflict, in its order: children, running, references, stopped."""
        if hard and self.store.children(image_id):
            raise ImageDeleteConflict(image_id, "image has dependent child images", hard=True)
        running = self.users.first(image_id, running=True) if hard else None
        if running is not None:
            raise ImageDeleteConflict(
                image_id, f"image is being used by running container {_short(running)}", hard=True, used=True
            )
        if references and self._references(image_id):
            raise ImageDeleteConflict(image_id, "image is referenced in multiple repositories", hard=False)
        stopped_user = self.users.first(image_id, running=False) if stopped else None
        if stopped_user is not None:
            raise ImageDeleteConflict(
                image_id, f"image is being used by stopped container {_short(stopped_user)}", hard=False, used=True
            )

    def _dangling(self, image_id: str) -> bool:
        return not self._references(image_id) and not self.store.children(image_id)

    def _references(self, image_id: str) -> tuple[str, ...]:
        try:
            return self.store.resolve(image_id).references
        except NotFound:
            return ()

    def _untag(self, image_id: str, name: str) -> None:
        try:
            self.store.untag(name)
        except NotFound:
            pass  # already gone: removing a reference is idempotent, as in Docker
        self.outcome.records.append({"Untagged": name})
        self.outcome.events.append(("untag", image_id, image_id))


def is_single_reference(references: Sequence[str]) -> bool:
    """Docker's isSingleReference: at most one tag, and any digest references in that tag's repository."""
    if len(references) <= 1:
        return len(references) == 1
    digest_repos: set[str] = set()
    single: str | None = None
    for name in references:
        if "@" in name:
            digest_repos.add(_name(name))
        elif single is None:
            single = name
        else:
            return False
    chosen = single if single is not None else references[0]
    return len(digest_repos) == 1 and _name(chosen) in digest_repos


def _name(reference: str) -> str:
    return parse_reference(reference).name


def _short(image_or_container_id: str) -> str:
    return image_or_container_id.removeprefix("sha256:")[:12]


def image_labels(image: Image) -> dict[str, str]:
    labels = (image.config.get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}

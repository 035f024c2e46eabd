"""Images: manifests and configs in the content store, named by the refs table, unpacked on demand.

Nothing is cached but the manifest -> config (image ID) map, which is
content-addressed and so never stale: every lookup reads refs.json (and
the small manifest and config blobs) again, so an image written by another
process sharing the root (`corral image bootstrap --root DIR` beside a
daemon) is seen at once. An image is its config (Docker's image ID); a
config stored under several manifests is one image whose references are
those of all its manifests. All methods block on the disk and on file
locks; call them from a worker thread in trio code.

Removing an image only edits the tables; its blobs and unpacked layers
are freed by `storage.gc.collect`, which keeps whatever another image (or
a container, named by the caller) still uses.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.content import ContentStore
from supervisor.storage.digest import digest_hex
from supervisor.storage.errors import CorruptContent
from supervisor.storage.gc import collect
from supervisor.storage.layers import layer_dir, unpack_layer
from supervisor.storage.layerstats import layer_stats
from supervisor.storage.layout import MEDIA_TYPE_MANIFEST, ImageLayout, StoredManifest
from supervisor.storage.lookup import find_manifest, pick_manifest, ref_sort_key
from supervisor.storage.reference import parse_reference
from supervisor.timestamps import now_rfc3339, parse_rfc3339_ns

log = structlog.get_logger(__name__)

MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
IMAGES_DIR = "images"
LAYERS_DIR = "layers"

# A layer to add: a tar or gzip-compressed tar, as a file (streamed) or in memory.
LayerInput = Path | bytes


@dataclass(frozen=True)
class Image:
    id: str  # "sha256:<config digest hex>", Docker's image ID
    manifest_digest: str
    config: dict[str, Any] = field(compare=False, repr=False)
    manifest: dict[str, Any] = field(compare=False, repr=False)
    diff_ids: tuple[str, ...]
    layer_digests: tuple[str, ...]
    repo_tags: tuple[str, ...]  # familiar "name:tag", sorted by full name as Docker lists them
    repo_digests: tuple[str, ...]  # familiar "name@sha256:<manifest digest>"
    created: str  # RFC 3339, from the config; "" if it has none
    # Each layer's unpacked size (Docker's layer size), bottom first; for images
    # stored without it, the compressed blob sizes from the manifest.
    layer_sizes: tuple[int, ...]
    parent: str = ""  # image ID this one was committed from, "" if none
    last_tag_time: str = ""  # RFC 3339, "" if never tagged here

    @property
    def short_id(self) -> str:
        return digest_hex(self.id)[:12]

    @property
    def size(self) -> int:
        return sum(self.layer_sizes)

    @property
    def references(self) -> tuple[str, ...]:
        return self.repo_tags + self.repo_digests


class ImageStore:
    """Images under the state root: `images/` (OCI layout + refs.json) and `layers/` (unpacked)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content = ContentStore(root / IMAGES_DIR)
        self.layout = ImageLayout(root / IMAGES_DIR)
        self.layers_root = root / LAYERS_DIR
        self.layers_root.mkdir(parents=True, exist_ok=True)
        self._config_of: dict[str, str] = {}

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Keep GC and crash recovery out while writing blobs the tables do not name yet (see layout.py)."""
        with self.layout.lease():
            yield

    def add_image(
        self,
        config: Mapping[str, Any],
        layers: Sequence[LayerInput],
        tags: Sequence[str],
        *,
        parent: str | None = None,
    ) -> Image:
        """Store an image from its config and layer tars (bottom-most first) and point `tags` at it.

        The config's `rootfs.diff_ids` are computed from the layers
        (InvalidArgument if the config names different ones). Adding the
        same content again yields the same image and only moves the tags.
        `parent` is the image ID it was committed from (Docker's Parent).
        """
        refs = [parse_reference(tag) for tag in tags]
        with self.lease():
            descriptors: list[dict[str, Any]] = []
            diff_ids: list[str] = []
            sizes: list[int] = []
            uncompressed_total = 0
            for layer in layers:
                digest = self._store_layer(layer)
                with open(self.content.path(digest), "rb") as blob:
                    stats = layer_stats(blob)
                descriptors.append(
                    {
                        "mediaType": MEDIA_TYPE_LAYER_GZIP if stats.gzipped else MEDIA_TYPE_LAYER_TAR,
                        "digest": digest,
                        "size": self.content.size(digest),
                    }
                )
                diff_ids.append(stats.diff_id)
                sizes.append(stats.content_size)
                uncompressed_total += stats.tar_size
            config_bytes = canonical_json(_with_rootfs(config, diff_ids))
            config_digest = self.content.put(config_bytes)
            manifest = {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                "layers": descriptors,
            }
            manifest_bytes = canonical_json(manifest)
            manifest_digest = self.content.put(manifest_bytes)
            with self.layout.edit() as state:
                known = state.manifests.get(manifest_digest)
                state.manifests[manifest_digest] = StoredManifest(
                    digest=manifest_digest,
                    size=len(manifest_bytes),
                    media_type=MEDIA_TYPE_MANIFEST,
                    uncompressed_size=uncompressed_total,
                    layer_sizes=tuple(sizes),
                    parent=parent or (known.parent if known else None),
                    last_tag_time=now_rfc3339() if refs else (known.last_tag_time if known else None),
                )
                for ref in refs:
                    state.refs[ref.familiar_with_tag] = manifest_digest
                image = self._load(manifest_digest, state.refs, state.manifests)
        log.info("image.added", id=image.id, manifest=manifest_digest, tags=list(image.repo_tags))
        return image

    def resolve(self, name_or_id: str) -> Image:
        """The image named by a reference, a full ID, or a unique ID prefix (refs win, as in Docker)."""
        refs = self.layout.read_refs()
        manifests = self.layout.read_manifests()
        return self._load(find_manifest(name_or_id, refs, manifests, self.config_of), refs, manifests)

    def exists(self, name_or_id: str) -> bool:
        try:
            self.resolve(name_or_id)
        except NotFound:
            return False
        return True

    def list_images(self) -> list[Image]:
        """Every stored image (one per image ID), tagged or not, newest first."""
        refs = self.layout.read_refs()
        manifests = self.layout.read_manifests()
        by_id: dict[str, list[str]] = {}
        for manifest_digest in sorted(set(manifests) | set(refs.values())):
            image_id = self.config_of(manifest_digest)
            if image_id is None:
                log.error("image.unreadable", manifest=manifest_digest, error="manifest blob missing or corrupt")
                continue
            by_id.setdefault(image_id, []).append(manifest_digest)
        images = []
        for digests in by_id.values():
            try:
                images.append(self._load(pick_manifest(digests, refs), refs, manifests))
            except (NotFound, CorruptContent) as err:
                # One broken image must not hide the others from `images`.
                log.error("image.unreadable", manifest=digests[0], error=str(err))
        return sorted(images, key=lambda image: (parse_rfc3339_ns(image.created) or 0, image.id), reverse=True)

    def tag(self, name_or_id: str, new_ref: str) -> Image:
        """Point `new_ref` (moving it if it exists) at the image `name_or_id` names."""
        ref = parse_reference(new_ref)
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        with self.layout.edit() as state:
            manifest_digest = find_manifest(name_or_id, state.refs, state.manifests, self.config_of)
            state.refs[ref.familiar_with_tag] = manifest_digest
            stored = state.manifests.get(manifest_digest)
            if stored is not None:
                state.manifests[manifest_digest] = replace(stored, last_tag_time=now_rfc3339())
            image = self._load(manifest_digest, state.refs, state.manifests)
        log.info("image.tagged", id=image.id, ref=ref.familiar_with_tag)
        return image

    def untag(self, ref_text: str) -> Image:
        """Remove one ref; the image stays (perhaps untagged). Returns the image as it is now."""
        key = parse_reference(ref_text).familiar_with_tag
        with self.layout.edit() as state:
            manifest_digest = state.refs.pop(key, None)
            if manifest_digest is None:
                raise NotFound(f"No such image: {key}")
            image = self._load(manifest_digest, state.refs, state.manifests)
        log.info("image.untagged", id=image.id, ref=key)
        return image

    def remove_image(self, image_id: str, *, hold: bool = False) -> Image:
        """Take the image (every manifest of its config, every ref to them) out of the tables.

        Its content stays until `gc.collect` runs. With `hold` (containers use
        it), GC keeps its content, manifest included, while they do: it is no
        image any more, but `container_image` still finds it. NotFound if it
        is not stored.
        """
        with self.layout.edit() as state:
            digests = self._manifests_of(image_id, state.refs, state.manifests)
            if not digests:
                raise NotFound(f"No such image: {image_id}")
            image = self._load(pick_manifest(digests, state.refs), state.refs, state.manifests)
            if hold:
                state.held[image_id] = image.manifest_digest
            for name in [name for name, digest in state.refs.items() if digest in digests]:
                del state.refs[name]
            for digest in digests:
                state.manifests.pop(digest, None)
        log.info("image.removed", id=image.id, manifests=digests)
        return image

    def delete(self, name_or_id: str, keep_image_ids: Collection[str] = ()) -> Image:
        """Remove an image with all its refs, then free the blobs and unpacked layers nothing else uses.

        `keep_image_ids`: images whose config and unpacked layers stay (those containers use).
        """
        image = self.remove_image(self.resolve(name_or_id).id)
        collect(self, keep_image_ids, expected=image_content(image))
        log.info("image.deleted", id=image.id, manifest=image.manifest_digest)
        return image

    def children(self, image_id: str) -> list[str]:
        """IDs of the stored images whose parent is `image_id`."""
        found = set()
        for digest, stored in self.layout.read_manifests().items():
            if stored.parent == image_id:
                child = self.config_of(digest)
                if child is not None:
                    found.add(child)
        return sorted(found)

    def layer_dirs(self, image: Image) -> list[Path]:
        """The image's unpacked layers, bottom-most first, unpacking (and verifying) any not yet unpacked."""
        dirs = []
        with self.lease():
            for blob_digest, diff_id in zip(image.layer_digests, image.diff_ids, strict=True):
                final = layer_dir(self.layers_root, diff_id)
                if not final.is_dir():
                    if not self.content.has(blob_digest):
                        raise NotFound(f"layer {blob_digest} of image {image.id} is missing from the store")
                    unpack_layer(self.content.path(blob_digest), diff_id, self.layers_root, blob_digest=blob_digest)
                dirs.append(final)
        return dirs

    def unpacked_layer_dirs(self, image: Image) -> list[Path] | None:
        """The image's layers, bottom-most first, if every one is unpacked already; else None.

        Only looks (a stat per layer), so a caller that has the image pinned
        against GC can skip a worker thread when there is nothing to unpack.
        """
        dirs = [layer_dir(self.layers_root, diff_id) for diff_id in image.diff_ids]
        return dirs if all(d.is_dir() for d in dirs) else None

    def container_image(self, image_id: str) -> Image:
        """A container's image by ID, also after `rmi -f` took it out of the tables (then untagged).

        As Docker's containers keep their image's layers after a forced
        delete, GC keeps the content of images that containers use.
        """
        try:
            return self.resolve(image_id)
        except NotFound:
            held = self.layout.read_held().get(image_id)
            if held is None:
                raise
        return self._load(held, {}, {})

    def container_layers(self, image_id: str) -> list[Path]:
        """The unpacked layers of a container's image, bottom-most first (unpacked on demand)."""
        try:
            config = json.loads(self.content.get(image_id))
        except NotFound:
            raise NotFound(f"No such image: {image_id}") from None
        dirs = [layer_dir(self.layers_root, diff_id) for diff_id in config.get("rootfs", {}).get("diff_ids", [])]
        if all(d.is_dir() for d in dirs):
            return dirs
        return self.layer_dirs(self.container_image(image_id))

    def config_of(self, manifest_digest: str) -> str | None:
        """The image ID (config digest) of a stored manifest; None if its blob is missing or corrupt."""
        image_id = self._config_of.get(manifest_digest)
        if image_id is None:
            try:
                image_id = str(json.loads(self.content.get(manifest_digest))["config"]["digest"])
            except (NotFound, CorruptContent, ValueError, KeyError, TypeError):
                return None
            self._config_of[manifest_digest] = image_id
        return image_id

    def _manifests_of(
        self, image_id: str, refs: Mapping[str, str], manifests: Mapping[str, StoredManifest]
    ) -> list[str]:
        return [d for d in sorted(set(manifests) | set(refs.values())) if self.config_of(d) == image_id]

    def _store_layer(self, layer: LayerInput) -> str:
        if isinstance(layer, bytes):
            return self.content.put(layer)
        with open(layer, "rb") as source:
            return self.content.put_stream(source)

    def _load(self, manifest_digest: str, refs: Mapping[str, str], manifests: Mapping[str, StoredManifest]) -> Image:
        manifest = json.loads(self.content.get(manifest_digest))
        config_digest = manifest["config"]["digest"]
        config = json.loads(self.content.get(config_digest))
        self._config_of[manifest_digest] = config_digest
        layer_digests = tuple(layer["digest"] for layer in manifest["layers"])
        diff_ids = tuple(config.get("rootfs", {}).get("diff_ids", []))
        if len(diff_ids) != len(layer_digests):
            raise CorruptContent(
                f"image {config_digest}: manifest {manifest_digest} has {len(layer_digests)} layers "
                f"but its config names {len(diff_ids)} diff IDs"
            )
        siblings = set(self._manifests_of(config_digest, refs, manifests)) | {manifest_digest}
        names = sorted((name for name, digest in refs.items() if digest in siblings), key=ref_sort_key)
        stored = [manifests[d] for d in sorted(siblings) if d in manifests]
        main = manifests.get(manifest_digest)
        sizes = main.layer_sizes if main is not None else None
        if sizes is None or len(sizes) != len(layer_digests):
            sizes = tuple(int(layer["size"]) for layer in manifest["layers"])
        return Image(
            id=config_digest,
            manifest_digest=manifest_digest,
            config=config,
            manifest=manifest,
            diff_ids=diff_ids,
            layer_digests=layer_digests,
            repo_tags=tuple(name for name in names if "@" not in name),
            repo_digests=tuple(name for name in names if "@" in name),
            created=str(config.get("created", "")),
            layer_sizes=sizes,
            parent=next((s.parent for s in stored if s.parent), ""),
            last_tag_time=max((s.last_tag_time for s in stored if s.last_tag_time), default=""),
        )


def image_content(image: Image) -> set[str]:
    """The blob digests and diff IDs an image is made of."""
    return {image.manifest_digest, image.id, *image.layer_digests, *image.diff_ids}


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """One byte form per document, so equal content always gets the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _with_rootfs(config: Mapping[str, Any], diff_ids: list[str]) -> dict[str, Any]:
    stated = (config.get("rootfs") or {}).get("diff_ids")
    if stated is not None and list(stated) != diff_ids:
        raise InvalidArgument(f"image config names diff IDs {list(stated)}, but the layers given have {diff_ids}")
    return {**config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}

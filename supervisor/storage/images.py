"""Images: manifests and configs in the content store, named by the refs table, unpacked on demand.

Nothing is cached: every lookup reads refs.json (and the small manifest and
config blobs) again, so an image written by another process sharing the
root (`corral image bootstrap --root DIR` beside a daemon) is seen at once.
All methods block on the disk and on a file lock; call them from a
worker thread in trio code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.content import ContentStore
from supervisor.storage.digest import digest_hex
from supervisor.storage.errors import CorruptContent
from supervisor.storage.layers import GZIP_MAGIC, TEMP_PREFIX, layer_dir, uncompressed_digest, unpack_layer
from supervisor.storage.layout import MEDIA_TYPE_MANIFEST, ImageLayout, StoredManifest
from supervisor.storage.reference import Reference, parse_reference

log = structlog.get_logger(__name__)

MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
IMAGES_DIR = "images"
LAYERS_DIR = "layers"

_FULL_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")

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
    repo_tags: tuple[str, ...]  # familiar "name:tag"
    repo_digests: tuple[str, ...]  # familiar "name@sha256:<manifest digest>"
    created: str  # RFC 3339, from the config; "" if it has none
    # Sum of the uncompressed layer tars when recorded at add time (always,
    # for images added here), else of the compressed blobs in the manifest.
    size: int

    @property
    def short_id(self) -> str:
        return digest_hex(self.id)[:12]


class ImageStore:
    """Images under the state root: `images/` (OCI layout + refs.json) and `layers/` (unpacked)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content = ContentStore(root / IMAGES_DIR)
        self.layout = ImageLayout(root / IMAGES_DIR)
        self.layers_root = root / LAYERS_DIR
        self.layers_root.mkdir(parents=True, exist_ok=True)

    def add_image(self, config: Mapping[str, Any], layers: Sequence[LayerInput], tags: Sequence[str]) -> Image:
        """Store an image from its config and layer tars (bottom-most first) and point `tags` at it.

        The config's `rootfs.diff_ids` are computed from the layers
        (InvalidArgument if the config names different ones). Adding the
        same content again yields the same image and only moves the tags.
        """
        refs = [parse_reference(tag) for tag in tags]
        # The lock is held while blobs are written so that a concurrent
        # delete cannot collect a blob this image is about to reference.
        with self.layout.edit() as state:
            descriptors: list[dict[str, Any]] = []
            diff_ids: list[str] = []
            uncompressed_total = 0
            for layer in layers:
                digest = self._store_layer(layer)
                with open(self.content.path(digest), "rb") as blob:
                    gzipped = blob.read(2) == GZIP_MAGIC
                    blob.seek(0)
                    diff_id, uncompressed_size = uncompressed_digest(blob)
                descriptors.append(
                    {
                        "mediaType": MEDIA_TYPE_LAYER_GZIP if gzipped else MEDIA_TYPE_LAYER_TAR,
                        "digest": digest,
                        "size": self.content.size(digest),
                    }
                )
                diff_ids.append(diff_id)
                uncompressed_total += uncompressed_size
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
            state.manifests[manifest_digest] = StoredManifest(
                digest=manifest_digest,
                size=len(manifest_bytes),
                media_type=MEDIA_TYPE_MANIFEST,
                uncompressed_size=uncompressed_total,
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
        return self._load(self._find(name_or_id, refs, manifests), refs, manifests)

    def exists(self, name_or_id: str) -> bool:
        try:
            self.resolve(name_or_id)
        except NotFound:
            return False
        return True

    def list_images(self) -> list[Image]:
        """Every stored image, tagged or not, newest first."""
        refs = self.layout.read_refs()
        manifests = self.layout.read_manifests()
        images = []
        for manifest_digest in sorted(set(manifests) | set(refs.values())):
            try:
                images.append(self._load(manifest_digest, refs, manifests))
            except (NotFound, CorruptContent) as err:
                # One broken image must not hide the others from `images`.
                log.error("image.unreadable", manifest=manifest_digest, error=str(err))
        return sorted(images, key=lambda image: (image.created, image.id), reverse=True)

    def tag(self, name_or_id: str, new_ref: str) -> Image:
        """Point `new_ref` (moving it if it exists) at the image `name_or_id` names."""
        ref = parse_reference(new_ref)
        if ref.digest is not None:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {new_ref}")
        with self.layout.edit() as state:
            manifest_digest = self._find(name_or_id, state.refs, state.manifests)
            state.refs[ref.familiar_with_tag] = manifest_digest
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

    def delete(self, name_or_id: str) -> Image:
        """Remove an image with all its refs, and the blobs and unpacked layers no other image uses.

        The caller must make sure no container still uses the image: its
        unpacked layers are overlay lower dirs.
        """
        with self.layout.edit() as state:
            manifest_digest = self._find(name_or_id, state.refs, state.manifests)
            image = self._load(manifest_digest, state.refs, state.manifests)
            for name in [name for name, digest in state.refs.items() if digest == manifest_digest]:
                del state.refs[name]
            state.manifests.pop(manifest_digest, None)
            kept_blobs, kept_diff_ids = self._in_use(set(state.manifests) | set(state.refs.values()))
            for blob in (manifest_digest, image.id, *image.layer_digests):
                if blob not in kept_blobs:
                    self.content.delete(blob)
            for diff_id in image.diff_ids:
                if diff_id not in kept_diff_ids:
                    _remove_layer_dir(self.layers_root, diff_id)
        log.info("image.deleted", id=image.id, manifest=manifest_digest)
        return image

    def layer_dirs(self, image: Image) -> list[Path]:
        """The image's unpacked layers, bottom-most first, unpacking (and verifying) any not yet unpacked."""
        dirs = []
        for blob_digest, diff_id in zip(image.layer_digests, image.diff_ids, strict=True):
            final = layer_dir(self.layers_root, diff_id)
            if not final.is_dir():
                if not self.content.has(blob_digest):
                    raise NotFound(f"layer {blob_digest} of image {image.id} is missing from the store")
                unpack_layer(self.content.path(blob_digest), diff_id, self.layers_root, blob_digest=blob_digest)
            dirs.append(final)
        return dirs

    def _store_layer(self, layer: LayerInput) -> str:
        if isinstance(layer, bytes):
            return self.content.put(layer)
        with open(layer, "rb") as source:
            return self.content.put_stream(source)

    def _find(self, text: str, refs: Mapping[str, str], manifests: Mapping[str, StoredManifest]) -> str:
        """The manifest digest `text` names, by Docker's rules: full ID, then reference, then ID prefix."""
        full_id = _FULL_ID.match(text)
        if full_id:
            found = self._manifests_by_id_prefix(full_id.group(1), refs, manifests)
            if not found:
                raise NotFound(f"No such image: {text}")
            return _pick_manifest(found.popitem()[1], refs)
        ref: Reference | None = None
        try:
            ref = parse_reference(text)
        except InvalidArgument:
            if not _ID_PREFIX.match(text):
                raise
        if ref is not None:
            manifest_digest = refs.get(ref.familiar_with_tag)
            if manifest_digest is not None:
                return manifest_digest
            if ref.digest is not None and (ref.digest in manifests or ref.digest in refs.values()):
                return ref.digest
        prefix = _ID_PREFIX.match(text)
        if prefix:
            found = self._manifests_by_id_prefix(prefix.group(1), refs, manifests)
            if len(found) > 1:
                ids = ", ".join(sorted(found))
                raise InvalidArgument(f"ambiguous image ID prefix {text!r}: it matches {ids}")
            if found:
                return _pick_manifest(found.popitem()[1], refs)
        raise NotFound(f"No such image: {ref.familiar_with_tag if ref else text}")

    def _manifests_by_id_prefix(
        self, hex_prefix: str, refs: Mapping[str, str], manifests: Mapping[str, StoredManifest]
    ) -> dict[str, list[str]]:
        """Image ID -> its manifests, for the IDs starting with `hex_prefix`."""
        found: dict[str, list[str]] = {}
        for manifest_digest in sorted(set(manifests) | set(refs.values())):
            try:
                manifest = json.loads(self.content.get(manifest_digest))
            except NotFound:
                continue
            image_id = manifest["config"]["digest"]
            if digest_hex(image_id).startswith(hex_prefix):
                found.setdefault(image_id, []).append(manifest_digest)
        return found

    def _in_use(self, manifest_digests: set[str]) -> tuple[set[str], set[str]]:
        """Blobs and diff IDs the given manifests reference."""
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        for manifest_digest in manifest_digests:
            try:
                manifest = json.loads(self.content.get(manifest_digest))
                config = json.loads(self.content.get(manifest["config"]["digest"]))
            except NotFound:
                continue
            blobs.add(manifest_digest)
            blobs.add(manifest["config"]["digest"])
            blobs.update(layer["digest"] for layer in manifest["layers"])
            diff_ids.update(config.get("rootfs", {}).get("diff_ids", []))
        return blobs, diff_ids

    def _load(self, manifest_digest: str, refs: Mapping[str, str], manifests: Mapping[str, StoredManifest]) -> Image:
        manifest = json.loads(self.content.get(manifest_digest))
        config_digest = manifest["config"]["digest"]
        config = json.loads(self.content.get(config_digest))
        layer_digests = tuple(layer["digest"] for layer in manifest["layers"])
        diff_ids = tuple(config.get("rootfs", {}).get("diff_ids", []))
        if len(diff_ids) != len(layer_digests):
            raise CorruptContent(
                f"image {config_digest}: manifest {manifest_digest} has {len(layer_digests)} layers "
                f"but its config names {len(diff_ids)} diff IDs"
            )
        names = sorted(name for name, digest in refs.items() if digest == manifest_digest)
        stored = manifests.get(manifest_digest)
        size = (
            stored.uncompressed_size
            if stored is not None and stored.uncompressed_size is not None
            else sum(int(layer["size"]) for layer in manifest["layers"])
        )
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
            size=size,
        )


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """One byte form per document, so equal content always gets the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _with_rootfs(config: Mapping[str, Any], diff_ids: list[str]) -> dict[str, Any]:
    stated = (config.get("rootfs") or {}).get("diff_ids")
    if stated is not None and list(stated) != diff_ids:
        raise InvalidArgument(f"image config names diff IDs {list(stated)}, but the layers given have {diff_ids}")
    return {**config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}


def _pick_manifest(manifest_digests: list[str], refs: Mapping[str, str]) -> str:
    """Of several manifests of one image ID, prefer one that is tagged."""
    tagged = set(refs.values())
    return next((digest for digest in manifest_digests if digest in tagged), manifest_digests[0])


def _remove_layer_dir(layers_root: Path, diff_id: str) -> None:
    """Rename first, so a crash mid-removal never leaves a half layer under its real name."""
    final = layer_dir(layers_root, diff_id)
    doomed = layers_root / f"{TEMP_PREFIX}deleted-{digest_hex(diff_id)}-{os.getpid()}"
    try:
        os.rename(final, doomed)
    except FileNotFoundError:
        return
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(doomed)
    log.info("layer.removed", diff_id=diff_id)

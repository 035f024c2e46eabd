"""`load`: an image archive from a stream into the image store, all or nothing.

1. stage: the whole tar into `ROOT/staging/load-*` (archive_staging);
2. plan: read manifest.json or index.json, cross-check every stated digest (archive_formats);
3. verify each layer in one streaming pass, read as the unpacker reads it
   (`decompressed_chunks`, `TarStream`, `check_member`): its uncompressed
   bytes hash to the config's diff ID, no member is hostile, and it does
   not expand beyond the free disk space;
4. commit, holding the collector's lease (`ImageStore.lease`): blobs go in
   through `ContentStore.put_stream` (verified, temp + fsync + rename),
   then one `layout.edit()` adds the manifests and moves the tags. Blobs
   are written before the layout lock is taken, so a long copy does not
   hold up other image operations.

A failure before step 4 leaves the store untouched. A crash inside step 4
leaves at most complete, verified blobs that no manifest names (for GC),
or, between the index and refs writes of `layout.edit`, a complete image
not yet tagged; never a manifest whose blobs are missing. Layers are
unpacked on first use, as for every other image.

An image whose ID (config digest) the store already has is not stored
twice: its tags move to the existing manifest, as Docker keys images by ID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from supervisor.errors import NotFound
from supervisor.storage.archive_formats import OCI_LAYER_ZSTD, ImagePlan, PlannedLayer, plan_archive
from supervisor.storage.archive_staging import (
    InvalidArchive,
    StagedFile,
    free_bytes,
    read_small,
    stage_archive,
    staging_dir,
    sweep_stale,
)
from supervisor.storage.decompress import decompressed_chunks
from supervisor.storage.digest import ALGORITHM, ByteSource, sha256_digest
from supervisor.storage.errors import CorruptContent, DigestMismatch, InvalidLayer, UnsafeLayer
from supervisor.storage.images import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR,
    ImageStore,
    canonical_json,
)
from supervisor.storage.layout import MEDIA_TYPE_MANIFEST, LayoutEdit, StoredManifest
from supervisor.storage.tar_members import check_member
from supervisor.storage.tar_stream import TarStream
from supervisor.timestamps import now_rfc3339

log = structlog.get_logger(__name__)

_LAYER_MEDIA_TYPES = {"none": MEDIA_TYPE_LAYER_TAR, "gzip": MEDIA_TYPE_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
}


@dataclass(frozen=True)
class VerifiedLayer:
    staged: StagedFile
    diff_id: str
    compression: str  # "none", "gzip" or "zstd"
    uncompressed_size: int  # of the tar
    content_size: int  # of what it unpacks to


@dataclass(frozen=True)
class LoadedImage:
    id: str
    manifest_digest: str
    tags: tuple[str, ...]
    # Tags that named another image before this load: (tag, that image's ID).
    replaced: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Prepared:
    plan: ImagePlan
    layers: tuple[VerifiedLayer, ...]
    manifest_bytes: bytes
    manifest_digest: str


def load_archive(store: ImageStore, source: ByteSource) -> list[LoadedImage]:
    """Load every image of the archive read from `source`; InvalidArgument (store untouched) if it is bad."""
    sweep_stale(store.root)
    with staging_dir(store.root) as dest:
        index = stage_archive(source, dest)
        plans = plan_archive(index)
        verified = verify_layers(plans, store.layers_root)
        return commit_images(store, plans, verified)


def verify_layers(plans: list[ImagePlan], layers_root: Path) -> dict[Path, VerifiedLayer]:
    """Each distinct staged layer, verified once against the diff ID its image config names."""
    layers_root.mkdir(parents=True, exist_ok=True)
    limit = free_bytes(layers_root)
    verified: dict[Path, VerifiedLayer] = {}
    for plan in plans:
        for position, layer in enumerate(plan.layers, start=1):
            what = f"layer {position} ({layer.staged.name}) of {plan.origin}"
            done = verified.get(layer.staged.path)
            if done is None:
                done = verify_layer(layer, limit, what)
                verified[layer.staged.path] = done
            if done.diff_id != layer.diff_id:
                raise DigestMismatch(
                    f"invalid archive: {what}: its content hashes to {done.diff_id}, "
                    f"but the image config names diff ID {layer.diff_id}"
                )
    return verified


def verify_layer(layer: PlannedLayer, limit: int, what: str) -> VerifiedLayer:
    """Read the layer as the unpacker will (same decompressor, tar reader and member vetting), hashing it."""
    with open(layer.staged.path, "rb") as blob:
        head = blob.read(6)
        blob.seek(0)
        compression = _sniff(head)
        if compression in ("xz", "bzip2"):
            raise InvalidArchive(f"unsupported archive: {what} is {compression}-compressed (gzip, zstd or none only)")
        if layer.declared_compression is not None and layer.declared_compression != compression:
            raise InvalidArchive(
                f"invalid archive: {what} is declared {layer.declared_compression} but is {compression}"
            )
        tar = _CountingChunks(decompressed_chunks(blob), limit, what)
        # Docker's layer size: the bytes of the files and symlinks it unpacks to, each path once.
        sizes: dict[str, int] = {}
        try:
            stream = TarStream(tar.next_chunk)
            while (header := stream.next_header()) is not None:
                check_member(header)
                name = header.name.strip("/")
                if header.isreg():
                    sizes[name] = header.realsize
                elif header.type == tarfile.SYMTYPE:
                    sizes[name] = len(header.linkname.encode())
                else:
                    sizes.pop(name, None)
            tar.drain()
        except UnsafeLayer as err:
            raise InvalidArchive(f"invalid archive: {what}: {err}") from None
        except InvalidLayer as err:
            raise InvalidArchive(f"invalid archive: {what} is not a valid layer: {err}") from None
    if tar.size == 0:
        raise InvalidArchive(f"invalid archive: {what} is empty")
    return VerifiedLayer(layer.staged, tar.digest, compression, tar.size, sum(sizes.values()))


def commit_images(store: ImageStore, plans: list[ImagePlan], verified: dict[Path, VerifiedLayer]) -> list[LoadedImage]:
    prepared = [_prepare(plan, verified) for plan in plans]
    loaded = []
    # The lease keeps GC and crash recovery off the blobs until the index names them.
    with store.lease():
        existing = _manifests_by_id(store, store.layout.read_manifests())
        for item in prepared:
            if _usable_manifest(store, existing.get(item.plan.image_id, [])) is None:
                _put_blobs(store, item)
        with store.layout.edit() as state:
            by_id = _manifests_by_id(store, state.manifests)
            for item in prepared:
                loaded.append(_commit_one(store, state, by_id, item))
    for image in loaded:
        log.info("image.loaded", id=image.id, manifest=image.manifest_digest, tags=list(image.tags))
    return loaded


def _commit_one(store: ImageStore, state: LayoutEdit, by_id: dict[str, list[str]], item: _Prepared) -> LoadedImage:
    image_id = item.plan.image_id
    manifest_digest = _usable_manifest(store, by_id.get(image_id, []))
    if manifest_digest is None:
        _put_blobs(store, item)  # writes only what an `rmi` may have freed since
        manifest_digest = item.manifest_digest
        state.manifests[manifest_digest] = StoredManifest(
            digest=manifest_digest,
            size=len(item.manifest_bytes),
            media_type=MEDIA_TYPE_MANIFEST,
            uncompressed_size=sum(layer.uncompressed_size for layer in item.layers),
            layer_sizes=tuple(layer.content_size for layer in item.layers),
        )
        by_id[image_id] = [manifest_digest]
    replaced = []
    for tag in item.plan.tags:
        previous = state.refs.get(tag)
        if previous is not None and previous != manifest_digest:
            previous_id = store.config_of(previous)
            if previous_id is not None and previous_id != image_id:
                replaced.append((tag, previous_id))
        state.refs[tag] = manifest_digest
    if item.plan.tags:
        stored = state.manifests.get(manifest_digest)
        if stored is not None:
            state.manifests[manifest_digest] = dataclasses.replace(stored, last_tag_time=now_rfc3339())
    return LoadedImage(image_id, manifest_digest, item.plan.tags, tuple(replaced))


def _prepare(plan: ImagePlan, verified: dict[Path, VerifiedLayer]) -> _Prepared:
    layers = tuple(verified[layer.staged.path] for layer in plan.layers)
    if plan.manifest is not None:
        return _Prepared(plan, layers, read_small(plan.manifest, "manifest"), plan.manifest.digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": plan.image_id, "size": plan.config.size},
        "layers": [
            {
                "mediaType": _LAYER_MEDIA_TYPES[layer.compression],
                "digest": layer.staged.digest,
                "size": layer.staged.size,
            }
            for layer in layers
        ],
    }
    data = canonical_json(manifest)
    return _Prepared(plan, layers, data, sha256_digest(data))


def _put_blobs(store: ImageStore, item: _Prepared) -> None:
    for staged in (item.plan.config, *(layer.staged for layer in item.layers)):
        if not store.content.has(staged.digest):
            with open(staged.path, "rb") as source:
                store.content.put_stream(source, expected=staged.digest)
    if not store.content.has(item.manifest_digest):
        store.content.put(item.manifest_bytes, expected=item.manifest_digest)


def _manifests_by_id(store: ImageStore, manifests: dict[str, StoredManifest]) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = {}
    for manifest_digest in sorted(manifests):
        image_id = store.config_of(manifest_digest)
        if image_id is not None:
            by_id.setdefault(image_id, []).append(manifest_digest)
    return by_id


def _usable_manifest(store: ImageStore, manifest_digests: list[str]) -> str | None:
    """The first of these manifests whose blobs are all in the store."""
    for manifest_digest in manifest_digests:
        try:
            manifest = json.loads(store.content.get(manifest_digest))
        except (NotFound, CorruptContent, ValueError):
            continue
        blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest.get("layers", []))]
        if all(store.content.has(digest) for digest in blobs):
            return manifest_digest
    return None


def _sniff(magic: bytes) -> str:
    for prefix, name in _MAGIC.items():
        if magic.startswith(prefix):
            return name
    return "none"


class _CountingChunks:
    """Hands over decompressed chunks, hashing and counting them; refuses to expand past `limit` bytes."""

    def __init__(self, chunks: Iterator[bytes], limit: int, what: str) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self._limit = limit
        self._what = what
        self.size = 0

    def next_chunk(self) -> bytes:
        data = next(self._chunks, b"")
        self._hash.update(data)
        self.size += len(data)
        if self.size > self._limit:
            raise InvalidArchive(
                f"invalid archive: {self._what} expands to more than the {self._limit} bytes free for layers"
            )
        return data

    def drain(self) -> None:
        while self.next_chunk():
            pass

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"

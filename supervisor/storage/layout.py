"""The OCI layout's shared tables: `index.json` (every stored manifest) and `refs.json` (our tags).

`refs.json` is the source of truth for tags; the per-tag annotations in
`index.json` are an export derived from it, for tools that read OCI
layouts. Both are rewritten whole (temp, fsync, rename) under one flock,
and read without a lock: a rename is atomic, so a reader sees one version
or the next. Nothing is cached in memory, so a CLI writing the same root
is seen by a running daemon on its next read.

What Docker keeps per image beside the config (parent image, last tag
time) and what we measure at add time (per-layer sizes) ride along as
corral annotations on the manifest's index entry.

`gc.lock` is the collector's lease: whoever writes blobs or unpacks layers
that are not yet referenced from the tables holds it shared (`lease()`),
from the first write until the index names them; garbage collection and
crash recovery hold it exclusively, so they never see such work half done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.storage.fsutil import atomic_write, exclusive_lock
from supervisor.storage.reference import parse_reference

OCI_LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
REFS_FILE = "refs.json"
# Images deleted (`rmi -f`) while containers still use them: image ID -> manifest digest.
HELD_FILE = "held.json"
LOCK_FILE = "layout.lock"
GC_LOCK_FILE = "gc.lock"

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# What containerd and `docker save` put beside ref.name: the full reference.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_UNCOMPRESSED_SIZE = "io.corral.image.uncompressed-size"
ANNOTATION_LAYER_SIZES = "io.corral.image.layer-sizes"  # "12,0,345": each layer's unpacked size
ANNOTATION_PARENT = "io.corral.image.parent"  # image ID of the image this one was committed from
ANNOTATION_LAST_TAG_TIME = "io.corral.image.last-tag-time"  # RFC 3339


@dataclass(frozen=True)
class StoredManifest:
    """One manifest listed in index.json."""

    digest: str
    size: int
    media_type: str = MEDIA_TYPE_MANIFEST
    # Sum of the layers' uncompressed tar sizes, when whoever stored the image knew it.
    uncompressed_size: int | None = None
    # Each layer's unpacked size (regular files and symlinks, as Docker's DiffSize), bottom first.
    layer_sizes: tuple[int, ...] | None = None
    parent: str | None = None
    last_tag_time: str | None = None

    def annotations(self) -> dict[str, str]:
        """The corral annotations this entry carries in index.json."""
        extra: dict[str, str] = {}
        if self.uncompressed_size is not None:
            extra[ANNOTATION_UNCOMPRESSED_SIZE] = str(self.uncompressed_size)
        if self.layer_sizes is not None:
            extra[ANNOTATION_LAYER_SIZES] = ",".join(str(size) for size in self.layer_sizes)
        if self.parent:
            extra[ANNOTATION_PARENT] = self.parent
        if self.last_tag_time:
            extra[ANNOTATION_LAST_TAG_TIME] = self.last_tag_time
        return extra


@dataclass
class LayoutEdit:
    """The tables as read under the lock; mutate them and the edit is written on exit."""

    manifests: dict[str, StoredManifest] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    # Not images any more (no listing shows them), but their content stays while containers use them.
    held: dict[str, str] = field(default_factory=dict)


class ImageLayout:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._index = root / INDEX_FILE
        self._refs = root / REFS_FILE
        self._held = root / HELD_FILE
        self._lock = root / LOCK_FILE
        if not (root / OCI_LAYOUT_FILE).exists():
            atomic_write(root / OCI_LAYOUT_FILE, b'{"imageLayoutVersion":"1.0.0"}')
        if not self._index.exists():
            # Under the lock, or this empty index could replace one another process just wrote.
            with exclusive_lock(self._lock):
                if not self._index.exists():
                    atomic_write(self._index, _dump(render_index({}, {})))

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold the collector's lease shared: no GC or crash recovery runs meanwhile (any process)."""
        with _flock(self.root / GC_LOCK_FILE, fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the collector's lease exclusively: every lease holder has finished (GC, recovery)."""
        with _flock(self.root / GC_LOCK_FILE, fcntl.LOCK_EX):
            yield

    def read_refs(self) -> dict[str, str]:
        """Familiar ref (`busybox:latest`, `busybox@sha256:...`) -> manifest digest."""
        try:
            return parse_refs(json.loads(self._refs.read_bytes()))
        except FileNotFoundError:
            return {}

    def read_held(self) -> dict[str, str]:
        """Image ID -> manifest digest of images removed while containers use them."""
        try:
            held = json.loads(self._held.read_bytes()).get("held", {})
        except FileNotFoundError:
            return {}
        return {str(image_id): str(digest) for image_id, digest in held.items()}

    def read_manifests(self) -> dict[str, StoredManifest]:
        try:
            return parse_index(json.loads(self._index.read_bytes()))
        except FileNotFoundError:
            return {}

    @contextlib.contextmanager
    def edit(self) -> Iterator[LayoutEdit]:
        """Read-modify-write the tables atomically with respect to other editors (any process)."""
        with exclusive_lock(self._lock):
            state = LayoutEdit(manifests=self.read_manifests(), refs=self.read_refs(), held=self.read_held())
            before = (dict(state.manifests), dict(state.refs), dict(state.held))
            yield state
            if state.held != before[2]:
                # First: an image taken out of the index below is held before it goes.
                atomic_write(self._held, _dump({"held": dict(sorted(state.held.items()))}))
            if (state.manifests, state.refs) == before[:2]:
                return
            # Manifests join the index before refs name them and leave it after
            # refs stopped naming them: a crash in between leaves a listed
            # manifest that no ref names (a whole, dangling image), never a ref
            # to a manifest the index has lost (and with it the image's metadata).
            old = before[0]
            removed = old.keys() - state.manifests.keys()
            grown = any(old.get(digest) != stored for digest, stored in state.manifests.items())
            if grown:
                union = {**{d: old[d] for d in removed}, **state.manifests}
                atomic_write(self._index, _dump(render_index(union, state.refs)))
            if state.refs != before[1]:
                atomic_write(self._refs, _dump(render_refs(state.refs)))
            if removed or not grown:
                # Also when only refs changed: the index's ref annotations follow them.
                atomic_write(self._index, _dump(render_index(state.manifests, state.refs)))


def parse_refs(doc: Mapping[str, object]) -> dict[str, str]:
    refs = doc.get("refs", {})
    if not isinstance(refs, dict):
        raise ValueError(f"{REFS_FILE}: 'refs' is not an object")
    return {str(name): str(digest) for name, digest in refs.items()}


def render_refs(refs: Mapping[str, str]) -> dict[str, object]:
    return {"schemaVersion": 1, "refs": dict(sorted(refs.items()))}


def parse_index(doc: Mapping[str, object]) -> dict[str, StoredManifest]:
    """The distinct manifests of an OCI index (a manifest listed once per tag counts once)."""
    manifests: dict[str, StoredManifest] = {}
    descriptors = doc.get("manifests", [])
    if not isinstance(descriptors, list):
        raise ValueError(f"{INDEX_FILE}: 'manifests' is not a list")
    for descriptor in descriptors:
        annotations = descriptor.get("annotations") or {}
        raw_size = annotations.get(ANNOTATION_UNCOMPRESSED_SIZE)
        raw_layer_sizes = annotations.get(ANNOTATION_LAYER_SIZES)
        manifests.setdefault(
            descriptor["digest"],
            StoredManifest(
                digest=descriptor["digest"],
                size=int(descriptor["size"]),
                media_type=descriptor.get("mediaType", MEDIA_TYPE_MANIFEST),
                uncompressed_size=int(raw_size) if raw_size is not None else None,
                layer_sizes=_parse_sizes(raw_layer_sizes) if raw_layer_sizes is not None else None,
                parent=annotations.get(ANNOTATION_PARENT) or None,
                last_tag_time=annotations.get(ANNOTATION_LAST_TAG_TIME) or None,
            ),
        )
    return manifests


def _parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",")) if text else ()


def render_index(manifests: Mapping[str, StoredManifest], refs: Mapping[str, str]) -> dict[str, object]:
    """index.json: one descriptor per tag of each manifest, and one bare descriptor for untagged ones."""
    refs_by_manifest: dict[str, list[str]] = {}
    for name, digest in sorted(refs.items()):
        refs_by_manifest.setdefault(digest, []).append(name)
    descriptors: list[dict[str, object]] = []
    for digest in sorted(manifests):
        stored = manifests[digest]
        base: dict[str, object] = {"mediaType": stored.media_type, "digest": digest, "size": stored.size}
        extra = stored.annotations()
        names = refs_by_manifest.get(digest, [])
        for name in names:
            ref = parse_reference(name)
            annotations = {ANNOTATION_IMAGE_NAME: ref.full, **extra}
            if ref.tag is not None:
                annotations[ANNOTATION_REF_NAME] = ref.tag
            descriptors.append({**base, "annotations": annotations})
        if not names:
            descriptors.append({**base, "annotations": extra} if extra else base)
    return {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": descriptors}


@contextlib.contextmanager
def _flock(path: Path, operation: int) -> Iterator[None]:
    # Its own file description per call, so it also orders threads of one process.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def _dump(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"

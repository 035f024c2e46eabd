"""The OCI layout's shared tables: `index.json` (every stored manifest) and `refs.json` (our tags).

`refs.json` is the source of truth for tags; the per-tag annotations in
`index.json` are an export derived from it, for tools that read OCI
layouts. Both are rewritten whole (temp, fsync, rename) under one flock,
and read without a lock: a rename is atomic, so a reader sees one version
or the next. Nothing is cached in memory, so a CLI writing the same root
is seen by a running daemon on its next read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.storage.fsutil import atomic_write, exclusive_lock
from supervisor.storage.reference import parse_reference

OCI_LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
REFS_FILE = "refs.json"
LOCK_FILE = "layout.lock"

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# What containerd and `docker save` put beside ref.name: the full reference.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_UNCOMPRESSED_SIZE = "io.corral.image.uncompressed-size"


@dataclass(frozen=True)
class StoredManifest:
    """One manifest listed in index.json."""

    digest: str
    size: int
    media_type: str = MEDIA_TYPE_MANIFEST
    # Sum of the layers' uncompressed tar sizes, when whoever stored the image knew it.
    uncompressed_size: int | None = None


@dataclass
class LayoutEdit:
    """The tables as read under the lock; mutate them and the edit is written on exit."""

    manifests: dict[str, StoredManifest] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class ImageLayout:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._index = root / INDEX_FILE
        self._refs = root / REFS_FILE
        self._lock = root / LOCK_FILE
        if not (root / OCI_LAYOUT_FILE).exists():
            atomic_write(root / OCI_LAYOUT_FILE, b'{"imageLayoutVersion":"1.0.0"}')
        if not self._index.exists():
            # Under the lock, or this empty index could replace one another process just wrote.
            with exclusive_lock(self._lock):
                if not self._index.exists():
                    atomic_write(self._index, _dump(render_index({}, {})))

    def read_refs(self) -> dict[str, str]:
        """Familiar ref (`busybox:latest`, `busybox@sha256:...`) -> manifest digest."""
        try:
            return parse_refs(json.loads(self._refs.read_bytes()))
        except FileNotFoundError:
            return {}

    def read_manifests(self) -> dict[str, StoredManifest]:
        try:
            return parse_index(json.loads(self._index.read_bytes()))
        except FileNotFoundError:
            return {}

    @contextlib.contextmanager
    def edit(self) -> Iterator[LayoutEdit]:
        """Read-modify-write both tables atomically with respect to other editors (any process)."""
        with exclusive_lock(self._lock):
            state = LayoutEdit(manifests=self.read_manifests(), refs=self.read_refs())
            before = (dict(state.manifests), dict(state.refs))
            yield state
            if (state.manifests, state.refs) == before:
                return
            # Index first: a crash in between leaves a listed manifest that no
            # ref names yet (a dangling image), never a ref to an unlisted one.
            atomic_write(self._index, _dump(render_index(state.manifests, state.refs)))
            atomic_write(self._refs, _dump(render_refs(state.refs)))


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
        manifests.setdefault(
            descriptor["digest"],
            StoredManifest(
                digest=descriptor["digest"],
                size=int(descriptor["size"]),
                media_type=descriptor.get("mediaType", MEDIA_TYPE_MANIFEST),
                uncompressed_size=int(raw_size) if raw_size is not None else None,
            ),
        )
    return manifests


def render_index(manifests: Mapping[str, StoredManifest], refs: Mapping[str, str]) -> dict[str, object]:
    """index.json: one descriptor per tag of each manifest, and one bare descriptor for untagged ones."""
    refs_by_manifest: dict[str, list[str]] = {}
    for name, digest in sorted(refs.items()):
        refs_by_manifest.setdefault(digest, []).append(name)
    descriptors: list[dict[str, object]] = []
    for digest in sorted(manifests):
        stored = manifests[digest]
        base: dict[str, object] = {"mediaType": stored.media_type, "digest": digest, "size": stored.size}
        extra: dict[str, str] = {}
        if stored.uncompressed_size is not None:
            extra[ANNOTATION_UNCOMPRESSED_SIZE] = str(stored.uncompressed_size)
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


def _dump(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"

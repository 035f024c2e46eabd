"""`save`: images from the store as a tar stream, docker-archive (default) or OCI archive.

docker-archive, as dockerd 20.10 writes it (moby's image/tarexport):
`<image id hex>.json` (the config, byte for byte, so the image keeps its
ID), one `<v1 id>/` dir per layer with `layer.tar` (the uncompressed
tar, whose sha256 is the config's diff ID), `VERSION` and a legacy `json`,
then `manifest.json` ([{Config, RepoTags, Layers}]) and `repositories`.
A layer already written for another image is a symlink to the first copy,
as Docker writes it. dockerd 20.10 itself only reads manifest.json, the
config and the layer tars; the legacy files are for older readers.

OCI archive (image-spec image-layout.md): `oci-layout`, `blobs/sha256/*`
(manifest, config and layer blobs exactly as stored, compressed or not),
and `index.json` with one descriptor per tag, annotated with the full
reference as both `org.opencontainers.image.ref.name` (what podman writes
and skopeo/umoci select by) and `io.containerd.image.name`.

Everything is streamed: `SaveSession.chunks()` yields the archive piece
by piece and never holds a layer in memory. Every blob is opened when the
session is prepared, so a concurrent `rmi` + GC cannot pull one from under
the stream (an unlinked open file stays readable), and every byte sent is
hashed: content that no longer matches its digest aborts the stream.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import structlog

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.decompress import compression_of, decompressed_chunks
from supervisor.storage.digest import ALGORITHM, digest_hex
from supervisor.storage.errors import CorruptContent
from supervisor.storage.images import Image, ImageStore
from supervisor.storage.layers import uncompressed_digest
from supervisor.storage.layout import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX
from supervisor.storage.reference import parse_reference
from supervisor.timestamps import parse_rfc3339_ns

log = structlog.get_logger(__name__)

FORMATS = ("docker", "oci")
_CHUNK = 1 << 20
_BLOCK = 512
_FULL_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class SavedImage:
    image: Image
    tags: tuple[str, ...]  # familiar name:tag, as they go into the archive


def select_images(store: ImageStore, names: Sequence[str]) -> list[SavedImage]:
    """The images `names` ask for, by Docker's rules (tarexport parseNames).

    `name:tag` and `name@digest` name one image; a bare `name` takes every
    tag of that repository (or, if it has none, is an image ID prefix); an
    ID names an image without tags.
    """
    if not names:
        raise InvalidArgument("no image names given to save")
    refs = store.layout.read_refs()
    chosen: dict[str, tuple[Image, list[str]]] = {}
    for name in names:
        for image, tag in _select(store, name, refs):
            entry = chosen.setdefault(image.id, (image, []))
            if tag is not None and tag not in entry[1]:
                entry[1].append(tag)
    return [SavedImage(image, tuple(tags)) for image, tags in chosen.values()]


def _select(store: ImageStore, name: str, refs: dict[str, str]) -> list[tuple[Image, str | None]]:
    if _FULL_ID.match(name):
        return [(store.resolve(name), None)]
    try:
        ref = parse_reference(name)
    except InvalidArgument:
        return [(store.resolve(name), None)]  # an ID prefix, or the reference's own error
    if ref.digest is not None:
        return [(store.resolve(name), None)]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        tag = ref.familiar_with_tag
        if tag not in refs:
            raise NotFound(f"No such image: {tag}")
        return [(store.resolve(tag), tag)]
    tags = sorted(t for t in refs if "@" not in t and parse_reference(t).name == ref.name)
    if not tags:
        return [(store.resolve(name), None)]
    return [(store.resolve(tag), tag) for tag in tags]


@dataclass(frozen=True)
class _Layer:
    digest: str  # blob digest
    diff_id: str
    compressed: bool  # gzip or zstd: docker-archive wants the plain tar
    tar_size: int  # size of the uncompressed tar (layer.tar)


class SaveSession:
    """One save: the images, their blobs held open, and the archive as a stream of chunks."""

    def __init__(self, store: ImageStore, images: Sequence[SavedImage], fmt: str) -> None:
        if fmt not in FORMATS:
            raise InvalidArgument(f"unknown archive format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.format = fmt
        self.images = tuple(images)
        self._store = store
        self._files: dict[str, BinaryIO] = {}
        self._layers: dict[str, _Layer] = {}
        try:
            for saved in self.images:
                self._prepare(saved.image)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        files, self._files = self._files, {}
        for handle in files.values():
            handle.close()

    def chunks(self) -> Generator[bytes, None, None]:
        try:
            yield from self._docker_archive() if self.format == "docker" else self._oci_archive()
            yield b"\0" * (2 * _BLOCK)
        finally:
            self.close()
        log.info("images.saved", format=self.format, ids=[saved.image.id for saved in self.images])

    # -- preparation ------------------------------------------------------------

    def _prepare(self, image: Image) -> None:
        for digest in (image.manifest_digest, image.id, *image.layer_digests):
            self._open(digest, image)
        for digest, diff_id in zip(image.layer_digests, image.diff_ids, strict=True):
            if digest in self._layers:
                continue
            blob = self._files[digest]
            compressed = compression_of(blob.read(4)) != "none"
            blob.seek(0)
            size = self._store.content.size(digest)
            if compressed and self.format == "docker":
                # A tar header states its size first: measure (and check) the uncompressed layer now.
                actual, size = uncompressed_digest(blob)
                blob.seek(0)
                if actual != diff_id:
                    raise CorruptContent(f"layer {digest} of image {image.id} unpacks to {actual}, not {diff_id}")
            self._layers[digest] = _Layer(digest, diff_id, compressed, size)

    def _open(self, digest: str, image: Image) -> None:
        if digest in self._files:
            return
        try:
            self._files[digest] = open(self._store.content.path(digest), "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise NotFound(f"image {image.id} is incomplete: blob {digest} is missing from the store") from None

    # -- docker-archive ---------------------------------------------------------

    def _docker_archive(self) -> Iterator[bytes]:
        entries: list[dict[str, object]] = []
        repositories: dict[str, dict[str, str]] = {}
        written: dict[str, str] = {}  # diff ID -> path of its layer.tar
        dirs: set[str] = set()
        for saved in self.images:
            image = saved.image
            mtime = _created_seconds(image)
            paths = []
            parent = ""
            chain = ""
            for position, (digest, diff_id) in enumerate(zip(image.layer_digests, image.diff_ids, strict=True)):
                chain = diff_id if not chain else _sha256(f"{chain} {diff_id}")
                top = position == len(image.diff_ids) - 1
                v1_id = digest_hex(_sha256(f"{chain} {parent} {image.id if top else ''}"))
                path = f"{v1_id}/layer.tar"
                if v1_id not in dirs:
                    dirs.add(v1_id)
                    yield _header(f"{v1_id}/", 0, mtime, tarfile.DIRTYPE)
                    yield from _small(f"{v1_id}/VERSION", b"1.0", mtime)
                    yield from _small(f"{v1_id}/json", _legacy_json(image, v1_id, parent, top), mtime)
                    if diff_id in written:
                        yield _header(path, 0, mtime, tarfile.SYMTYPE, linkname=f"../{written[diff_id]}")
                    else:
                        yield from self._layer_tar(path, self._layers[digest], mtime)
                        written[diff_id] = path
                paths.append(path)
                parent = v1_id
            config_name = f"{digest_hex(image.id)}.json"
            yield from self._blob(config_name, image.id, mtime)
            entries.append({"Config": config_name, "RepoTags": list(saved.tags) or None, "Layers": paths})
            for tag in saved.tags:
                ref = parse_reference(tag)
                repositories.setdefault(ref.familiar, {})[ref.tag or "latest"] = parent
        yield from _small("manifest.json", _go_json(entries), 0)
        if repositories:
            yield from _small("repositories", _go_json(repositories), 0)

    def _layer_tar(self, name: str, layer: _Layer, mtime: int) -> Iterator[bytes]:
        blob = self._files[layer.digest]
        blob.seek(0)
        raw = _HashingReader(blob)
        tar = _Hashed(decompressed_chunks(raw) if layer.compressed else raw.chunks())
        yield from _stream(name, layer.tar_size, tar, mtime)
        raw.drain()
        if raw.digest != layer.digest or tar.digest != layer.diff_id:
            raise CorruptContent(f"layer blob {layer.digest} changed while it was being saved")

    # -- OCI archive ------------------------------------------------------------

    def _oci_archive(self) -> Iterator[bytes]:
        yield from _small("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0)
        yield _header("blobs/", 0, 0, tarfile.DIRTYPE)
        yield _header("blobs/sha256/", 0, 0, tarfile.DIRTYPE)
        sent: set[str] = set()
        descriptors: list[dict[str, object]] = []
        manifests = self._store.layout.read_manifests()
        for saved in self.images:
            image = saved.image
            for digest in (*image.layer_digests, image.id, image.manifest_digest):
                if digest not in sent:
                    yield from self._blob(f"blobs/sha256/{digest_hex(digest)}", digest, 0)
                    sent.add(digest)
            stored = manifests.get(image.manifest_digest)
            base: dict[str, object] = {
                "mediaType": stored.media_type if stored else image.manifest.get("mediaType", ""),
                "digest": image.manifest_digest,
                "size": self._store.content.size(image.manifest_digest),
            }
            for tag in saved.tags:
                full = parse_reference(tag).full
                descriptors.append({**base, "annotations": {ANNOTATION_IMAGE_NAME: full, ANNOTATION_REF_NAME: full}})
            if not saved.tags:
                descriptors.append(base)
        index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": descriptors}
        yield from _small("index.json", _go_json(index), 0)

    def _blob(self, name: str, digest: str, mtime: int) -> Iterator[bytes]:
        blob = self._files[digest]
        blob.seek(0)
        source = _HashingReader(blob)
        yield from _stream(name, self._store.content.size(digest), source.chunks(), mtime)
        if source.digest != digest:
            raise CorruptContent(f"blob {digest} is corrupt: it hashes to {source.digest}")


# -- tar pieces -------------------------------------------------------------------


def _header(name: str, size: int, mtime: int, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o777 if kind == tarfile.SYMTYPE else 0o644
    info.uid = info.gid = 0
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _small(name: str, data: bytes, mtime: int) -> Iterator[bytes]:
    yield _header(name, len(data), mtime) + data + _padding(len(data))


def _stream(name: str, size: int, chunks: Iterable[bytes], mtime: int) -> Iterator[bytes]:
    yield _header(name, size, mtime)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise CorruptContent(f"{name}: content is longer than the {size} bytes announced")
        yield chunk
    if sent != size:
        raise CorruptContent(f"{name}: content ended after {sent} of {size} bytes")
    yield _padding(size)


class _HashingReader:
    """A blob read through this is hashed."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        self._hash.update(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"


class _Hashed:
    """Chunks passed through this are hashed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"


def _legacy_json(image: Image, v1_id: str, parent: str, top: bool) -> bytes:
    doc: dict[str, object] = {"id": v1_id}
    if parent:
        doc["parent"] = parent
    if top:
        for key in ("architecture", "author", "comment", "config", "container", "container_config", "docker_version"):
            if key in image.config:
                doc[key] = image.config[key]
        doc["created"] = image.config.get("created", "1970-01-01T00:00:00Z")
    else:
        doc["created"] = "1970-01-01T00:00:00Z"
    doc["os"] = image.config.get("os", "linux")
    return json.dumps(doc, separators=(",", ":")).encode()


def _go_json(doc: object) -> bytes:
    """As Go's json.Encoder writes it (compact, newline), which is how Docker writes these files."""
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _sha256(text: str) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(text.encode()).hexdigest()}"


def _created_seconds(image: Image) -> int:
    return max(0, (parse_rfc3339_ns(image.created) or 0) // 1_000_000_000)

"""What a staged image archive says to load: docker-archive (`manifest.json`) or an OCI image layout.

Both readers only interpret and cross-check the archive's own documents;
they return `ImagePlan`s naming staged files. Every digest the archive
states is checked against the staged bytes: a config against its image ID
(`<hex>.json`, `blobs/sha256/<hex>`), OCI descriptors (digest and size)
against their blobs. Layer contents are checked later (archive_load).

- docker-archive (moby's image/tarexport, podman's docker-archive):
  `manifest.json` lists `{Config, RepoTags, Layers}`; Layers are paths of
  (usually uncompressed) layer tars, one per `rootfs.diff_ids` entry.
  The legacy `repositories` file and `<v1 id>/json` dirs are ignored.
- OCI image layout (opencontainers/image-spec image-layout.md): `oci-layout`,
  `index.json`, `blobs/sha256/<hex>`. A nested index (multi-platform)
  yields the host's platform. Names come from `io.containerd.image.name`,
  else from `org.opencontainers.image.ref.name` when that is a full
  reference (`localhost/busybox:latest`, as podman writes it); a bare tag
  (`latest`, as Docker 25 writes it beside the containerd name) names no
  repository, so such an image loads untagged.
"""

from __future__ import annotations

import dataclasses
import platform
import re
from dataclasses import dataclass
from typing import Any

from supervisor.errors import InvalidArgument
from supervisor.storage.archive_staging import ArchiveIndex, InvalidArchive, StagedFile, parse_json, read_small
from supervisor.storage.bootstrap import goarch
from supervisor.storage.digest import is_digest
from supervisor.storage.layout import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from supervisor.storage.reference import parse_reference

MANIFEST_JSON = "manifest.json"
INDEX_JSON = "index.json"
OCI_LAYOUT = "oci-layout"
REPOSITORIES = "repositories"
MAX_IMAGES = 1000
MAX_LAYERS = 500
MAX_INDEX_DEPTH = 2

MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# Layer media types we can store and unpack -> the compression they declare.
LAYER_COMPRESSION = {
    OCI_LAYER_TAR: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}
_CONFIG_TYPES = (MEDIA_TYPE_CONFIG, DOCKER_CONFIG)
_MANIFEST_TYPES = (MEDIA_TYPE_MANIFEST, DOCKER_MANIFEST)
_INDEX_TYPES = (MEDIA_TYPE_INDEX, DOCKER_MANIFEST_LIST)
_NAMED_CONFIG = re.compile(r"(?:^|/)([0-9a-f]{64})\.json$")
_BLOB_PATH = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


@dataclass(frozen=True)
class PlannedLayer:
    staged: StagedFile
    diff_id: str  # as the config's rootfs names it
    # The compression the archive declares ("none", "gzip"); None where it declares nothing (docker-archive).
    declared_compression: str | None


@dataclass(frozen=True)
class ImagePlan:
    image_id: str  # sha256 of the config's bytes
    config: StagedFile
    layers: tuple[PlannedLayer, ...]
    tags: tuple[str, ...]  # familiar name:tag
    # An OCI manifest stored as it is (keeping its digest); None to have one written for the image.
    manifest: StagedFile | None
    origin: str  # for messages: "manifest.json entry 1", "index.json manifest sha256:..."


def plan_archive(index: ArchiveIndex) -> list[ImagePlan]:
    if index.has(MANIFEST_JSON):
        plans = plan_docker_archive(index)
    elif index.has(INDEX_JSON):
        plans = plan_oci_layout(index)
    elif index.has(REPOSITORIES):
        raise InvalidArchive(
            "invalid archive: it has a legacy 'repositories' file but no manifest.json "
            "(the pre-1.10 Docker format, which corral does not load)"
        )
    else:
        raise InvalidArchive("invalid archive: neither manifest.json (docker-archive) nor index.json (OCI layout)")
    if not plans:
        raise InvalidArchive("invalid archive: it names no image")
    return plans


# -- docker-archive -------------------------------------------------------------


def plan_docker_archive(index: ArchiveIndex) -> list[ImagePlan]:
    doc = index.read_json(MANIFEST_JSON, MANIFEST_JSON)
    if not isinstance(doc, list):
        raise InvalidArchive("invalid archive: manifest.json is not a list")
    if len(doc) > MAX_IMAGES:
        raise InvalidArchive(f"invalid archive: manifest.json lists more than {MAX_IMAGES} images")
    plans = []
    for number, item in enumerate(doc, start=1):
        where = f"manifest.json entry {number}"
        if not isinstance(item, dict):
            raise InvalidArchive(f"invalid archive: {where} is not an object")
        config_path = _string(item.get("Config"), f"{where}: Config")
        layer_paths = item.get("Layers")
        if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
            raise InvalidArchive(f"invalid archive: {where}: Layers is not a list of paths")
        repo_tags = item.get("RepoTags") or []
        if not isinstance(repo_tags, list) or not all(isinstance(t, str) for t in repo_tags):
            raise InvalidArchive(f"invalid archive: {where}: RepoTags is not a list of names")
        config = index.lookup(config_path, f"image config of {where}")
        named = _NAMED_CONFIG.search(config_path) or _BLOB_PATH.match(config_path)
        if named and config.digest != f"sha256:{named.group(1)}":
            raise InvalidArchive(
                f"invalid archive: image config {config_path!r} hashes to {config.digest}, not to its name"
            )
        diff_ids = check_config(parse_json(read_small(config, "image config"), f"image config {config_path!r}"), where)
        if len(diff_ids) != len(layer_paths):
            raise InvalidArchive(
                f"invalid archive: {where} lists {len(layer_paths)} layers but its config has {len(diff_ids)} diff IDs"
            )
        layers = []
        for position, (path, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True), start=1):
            staged = index.lookup(path, f"layer {position} of {where}")
            blob = _BLOB_PATH.match(path)
            if blob and staged.digest != f"sha256:{blob.group(1)}":
                raise InvalidArchive(f"invalid archive: blob {path!r} hashes to {staged.digest}, not to its name")
            layers.append(PlannedLayer(staged=staged, diff_id=diff_id, declared_compression=None))
        plans.append(
            ImagePlan(
                image_id=config.digest,
                config=config,
                layers=tuple(layers),
                tags=tuple(_tag(text, where) for text in repo_tags),
                manifest=None,
                origin=where,
            )
        )
    return plans


def check_config(config: Any, where: str) -> list[str]:
    """The diff IDs of an image config, after checking it is one for Linux."""
    if not isinstance(config, dict):
        raise InvalidArchive(f"invalid archive: the image config of {where} is not an object")
    os_name = config.get("os", "linux")
    if os_name != "linux":
        raise InvalidArchive(f"invalid archive: cannot load {os_name} image on linux ({where})")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArchive(f"invalid archive: the image config of {where} has no rootfs of type 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and is_digest(d) for d in diff_ids):
        raise InvalidArchive(f"invalid archive: the image config of {where} has malformed rootfs.diff_ids")
    if len(diff_ids) > MAX_LAYERS:
        raise InvalidArchive(f"invalid archive: {where} has {len(diff_ids)} layers, more than {MAX_LAYERS}")
    return diff_ids


def _tag(text: str, where: str) -> str:
    try:
        ref = parse_reference(text)
    except InvalidArgument as err:
        raise InvalidArchive(f"invalid archive: {where}: RepoTags entry {text!r}: {err}") from None
    if ref.digest is not None:
        raise InvalidArchive(f"invalid archive: {where}: RepoTags entry {text!r} is not a tag")
    return ref.familiar_with_tag


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArchive(f"invalid archive: {what} is missing or not a string")
    return value


# -- OCI image layout -----------------------------------------------------------


def plan_oci_layout(index: ArchiveIndex) -> list[ImagePlan]:
    if index.has(OCI_LAYOUT):
        layout = index.read_json(OCI_LAYOUT, OCI_LAYOUT)
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidArchive(f"invalid archive: unsupported oci-layout imageLayoutVersion {version!r}")
    doc = index.read_json(INDEX_JSON, INDEX_JSON)
    plans: list[ImagePlan] = []
    for descriptor in _descriptors(doc, INDEX_JSON):
        _walk(index, descriptor, _names(descriptor), plans, depth=0)
    if len(plans) > MAX_IMAGES:
        raise InvalidArchive(f"invalid archive: index.json names more than {MAX_IMAGES} images")
    return _merge_by_manifest(plans)


def _walk(
    index: ArchiveIndex, descriptor: dict[str, Any], names: tuple[str, ...], plans: list[ImagePlan], depth: int
) -> None:
    media_type = descriptor.get("mediaType")
    if media_type in _INDEX_TYPES:
        if depth >= MAX_INDEX_DEPTH:
            raise InvalidArchive(f"invalid archive: image indexes nested deeper than {MAX_INDEX_DEPTH}")
        nested = parse_json(read_small(blob(index, descriptor, "image index"), "image index"), "image index")
        children = _descriptors(nested, f"image index {descriptor['digest']}")
        _walk(index, _pick_platform(children, descriptor["digest"]), names, plans, depth + 1)
    elif media_type in _MANIFEST_TYPES:
        plans.append(_plan_manifest(index, descriptor, names))
    else:
        raise InvalidArchive(
            f"invalid archive: index.json names {descriptor['digest']} of unsupported type {media_type!r}"
        )


def _plan_manifest(index: ArchiveIndex, descriptor: dict[str, Any], names: tuple[str, ...]) -> ImagePlan:
    where = f"manifest {descriptor['digest']}"
    staged = blob(index, descriptor, "manifest")
    manifest = parse_json(read_small(staged, where), where)
    if not isinstance(manifest, dict):
        raise InvalidArchive(f"invalid archive: {where} is not an object")
    if manifest.get("mediaType", descriptor["mediaType"]) != descriptor["mediaType"]:
        raise InvalidArchive(
            f"invalid archive: {where} has mediaType {manifest.get('mediaType')!r}, its descriptor says otherwise"
        )
    config_descriptor = _check_descriptor(manifest.get("config"), f"{where}: config")
    if config_descriptor["mediaType"] not in _CONFIG_TYPES:
        raise InvalidArchive(
            f"invalid archive: {where} is not a container image (config type {config_descriptor['mediaType']!r})"
        )
    config = blob(index, config_descriptor, f"config of {where}")
    diff_ids = check_config(parse_json(read_small(config, f"config of {where}"), f"config of {where}"), where)
    layer_descriptors = manifest.get("layers")
    if not isinstance(layer_descriptors, list) or len(layer_descriptors) != len(diff_ids):
        raise InvalidArchive(f"invalid archive: {where} does not list one layer per diff ID of its config")
    layers = []
    for position, (layer_descriptor, diff_id) in enumerate(zip(layer_descriptors, diff_ids, strict=True), start=1):
        what = f"layer {position} of {where}"
        layer_descriptor = _check_descriptor(layer_descriptor, what)
        media_type = layer_descriptor["mediaType"]
        if media_type not in LAYER_COMPRESSION:
            raise InvalidArchive(f"unsupported archive: {what} has media type {media_type!r}")
        layers.append(PlannedLayer(blob(index, layer_descriptor, what), diff_id, LAYER_COMPRESSION[media_type]))
    keep = (
        descriptor["mediaType"] == MEDIA_TYPE_MANIFEST
        and config_descriptor["mediaType"] == MEDIA_TYPE_CONFIG
        and all(d["mediaType"] in (OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD) for d in layer_descriptors)
    )
    return ImagePlan(
        image_id=config.digest,
        config=config,
        layers=tuple(layers),
        tags=names,
        manifest=staged if keep else None,
        origin=f"index.json {where}",
    )


def blob(index: ArchiveIndex, descriptor: dict[str, Any], what: str) -> StagedFile:
    """The staged blob a checked descriptor names, its digest and size verified."""
    digest = descriptor["digest"]
    staged = index.lookup(f"blobs/{digest.replace(':', '/', 1)}", f"{what} blob {digest}")
    if staged.digest != digest:
        raise InvalidArchive(f"invalid archive: {what}: blob {digest} hashes to {staged.digest}")
    if staged.size != descriptor["size"]:
        raise InvalidArchive(
            f"invalid archive: {what}: blob {digest} is {staged.size} bytes, its descriptor says {descriptor['size']}"
        )
    return staged


def _descriptors(doc: Any, where: str) -> list[dict[str, Any]]:
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(manifests, list):
        raise InvalidArchive(f"invalid archive: {where} has no 'manifests' list")
    for descriptor in manifests:
        _check_descriptor(descriptor, f"{where} entry")
    return manifests


def _check_descriptor(descriptor: Any, what: str) -> dict[str, Any]:
    if not isinstance(descriptor, dict):
        raise InvalidArchive(f"invalid archive: {what} is not a descriptor object")
    digest, size, media_type = descriptor.get("digest"), descriptor.get("size"), descriptor.get("mediaType")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidArchive(f"invalid archive: {what} has an unsupported or malformed digest {digest!r} (sha256 only)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArchive(f"invalid archive: {what} has an invalid size {size!r}")
    if not isinstance(media_type, str):
        raise InvalidArchive(f"invalid archive: {what} has no mediaType")
    return descriptor


def _names(descriptor: dict[str, Any]) -> tuple[str, ...]:
    annotations = descriptor.get("annotations") or {}
    if not isinstance(annotations, dict):
        return ()
    for key in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME):
        value = annotations.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == ANNOTATION_REF_NAME and not any(c in value for c in "/:"):
            return ()  # a bare tag: no repository to put it in
        try:
            ref = parse_reference(value)
        except InvalidArgument:
            return ()
        return (f"{ref.familiar}:{ref.tag}",) if ref.tag else ()
    return ()


def _pick_platform(children: list[dict[str, Any]], index_digest: str) -> dict[str, Any]:
    arch = goarch(platform.machine())
    offered = []
    for child in children:
        wanted = child.get("platform") or {}
        offered.append(f"{wanted.get('os', '?')}/{wanted.get('architecture', '?')}")
        if wanted.get("os") == "linux" and wanted.get("architecture") == arch:
            return child
    raise InvalidArchive(
        f"image index {index_digest} has no linux/{arch} image (it has {', '.join(offered) or 'none'})"
    )


def _merge_by_manifest(plans: list[ImagePlan]) -> list[ImagePlan]:
    """index.json lists a manifest once per tag: one plan per manifest, with all its tags."""
    merged: dict[str, ImagePlan] = {}
    for plan in plans:
        key = plan.manifest.digest if plan.manifest is not None else plan.origin
        previous = merged.get(key)
        if previous is None:
            merged[key] = plan
        else:
            tags = previous.tags + tuple(t for t in plan.tags if t not in previous.tags)
            merged[key] = dataclasses.replace(previous, tags=tags)
    return list(merged.values())

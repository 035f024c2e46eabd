"""Garbage collection and crash recovery of the image store.

Why a kill at any point leaves a store the next daemon opens cleanly:

1. Removing an image (`ImageStore.remove_image`) only edits the tables:
   index.json, then refs.json, each written to a temp file, fsynced and
   renamed over the old one. Until a rename the image is whole; after it,
   no listing shows it. Nothing of its content is deleted yet. (A kill
   between the two renames leaves refs that name a manifest index.json no
   longer lists: marking below counts both tables, so that image stays
   whole and visible.)
2. `collect` then holds the collector's lease exclusively (every writer of
   blobs the tables do not name yet holds it shared until they do, so none
   is half done) and the layout lock (no table edit meanwhile), marks what
   the tables reference (each manifest, its config and layer blobs, the
   diff IDs its config lists) plus the configs and unpacked layers of
   images containers use, and sweeps the rest: blobs are unlinked (atomic:
   a blob is whole or absent, never torn, since blobs only ever appear by
   renaming a complete, fsynced temp file); an unpacked layer is first
   renamed to `layers/.tmp-deleted-...` and only then removed, so no half
   layer is ever left under a diff ID's name. If a referenced manifest or
   config cannot be read, nothing is swept: marking would be incomplete.
3. `recover`, at daemon start, holding the lease exclusively, removes what
   crashes leave behind (partial blob writes in `images/ingest/`, partial
   table writes `images/.*.tmp`, partial unpacks and interrupted removals
   `layers/.tmp-*`) and then collects as above.

A blob or layer dir no table references but which is younger than
`grace_seconds` is kept (a writer that does not take the lease may be
about to reference it), unless the caller names it in `expected`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from supervisor.errors import NotFound
from supervisor.storage.content import INGEST_DIR
from supervisor.storage.digest import ALGORITHM, digest_hex, is_digest
from supervisor.storage.errors import CorruptContent
from supervisor.storage.fsutil import fsync_dir
from supervisor.storage.layers import TEMP_PREFIX

if TYPE_CHECKING:
    from supervisor.storage.images import ImageStore

log = structlog.get_logger(__name__)

_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Collected:
    blobs: tuple[str, ...]  # digests unlinked
    layers: tuple[str, ...]  # diff IDs whose unpacked dirs were removed
    blob_bytes: int
    complete: bool  # False if marking was incomplete and nothing was swept


def collect(
    store: ImageStore,
    keep_image_ids: Collection[str] = (),
    *,
    expected: Collection[str] = (),
    grace_seconds: float = 0.0,
) -> Collected:
    """Free every blob and unpacked layer that no stored image and no image in `keep_image_ids` uses.

    `expected`: blob digests and diff IDs the caller knows were just
    released (the content of images it removed); they go whatever their age.
    """
    with store.layout.exclusive():
        return _collect_locked(store, keep_image_ids, set(expected), grace_seconds)


def recover(store: ImageStore, keep_image_ids: Collection[str] = ()) -> Collected:
    """Clean what crashes left (temp files and dirs), then collect everything unreferenced."""
    with store.layout.exclusive():
        leftovers = _remove_leftovers(store)
        if leftovers:
            log.info("images.recovered", leftovers=leftovers)
        return _collect_locked(store, keep_image_ids, set(), 0.0)


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """Docker's layer chain IDs: the first diff ID, then sha256("<parent chain> <diff id>")."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append(f"{ALGORITHM}:{hashlib.sha256(f'{chains[-1]} {diff_id}'.encode()).hexdigest()}")
    return chains


def _collect_locked(
    store: ImageStore, keep_image_ids: Collection[str], expected: set[str], grace_seconds: float
) -> Collected:
    with store.layout.edit() as state:
        # Images removed while containers used them: kept while they still do, forgotten after.
        state.held = {image_id: digest for image_id, digest in state.held.items() if image_id in keep_image_ids}
        marked = _mark(store, set(state.manifests) | set(state.refs.values()), set(state.held.values()), keep_image_ids)
        if marked is None:
            return Collected(blobs=(), layers=(), blob_bytes=0, complete=False)
        blobs, diff_ids = marked
        cutoff = time.time() - grace_seconds
        swept_blobs, freed = _sweep_blobs(store, blobs, expected, cutoff)
        swept_layers = _sweep_layers(store.layers_root, diff_ids, expected, cutoff)
    if swept_blobs or swept_layers:
        log.info("images.collected", blobs=len(swept_blobs), layers=len(swept_layers), bytes=freed)
    return Collected(blobs=tuple(swept_blobs), layers=tuple(swept_layers), blob_bytes=freed, complete=True)


def _mark(
    store: ImageStore, manifests: set[str], held: set[str], keep_image_ids: Collection[str]
) -> tuple[set[str], set[str]] | None:
    """Blob digests and diff IDs in use; None if a manifest or config the tables name cannot be read.

    Held manifests (of images containers use) are kept when readable; one
    that is not is no reason to stop: its image is no longer listed anyway.
    """
    blobs: set[str] = set()
    diff_ids: set[str] = set()
    configs: dict[str, bool] = {}  # config digest -> whether a table names it
    pending = [(digest, True) for digest in sorted(manifests)] + [(d, False) for d in sorted(held - manifests)]
    while pending:
        manifest_digest, required = pending.pop()
        if manifest_digest in blobs:
            continue
        try:
            manifest = json.loads(store.content.get(manifest_digest))
            if "manifests" in manifest:  # an image index: what it lists is in use too
                pending.extend((child["digest"], required) for child in manifest["manifests"])
                layers: list[str] = []
            else:
                config_digest = manifest["config"]["digest"]
                configs[config_digest] = configs.get(config_digest, False) or required
                layers = [layer["digest"] for layer in manifest["layers"]]
        except (NotFound, CorruptContent, ValueError, KeyError, TypeError) as err:
            if not required:
                continue
            log.error("images.gc_skipped", manifest=manifest_digest, error=str(err))
            return None
        blobs.add(manifest_digest)
        blobs.update(layers)
    for config_digest in sorted(set(configs) | {i for i in keep_image_ids if is_digest(i)}):
        try:
            config = json.loads(store.content.get(config_digest))
            listed = list(config.get("rootfs", {}).get("diff_ids", []))
        except (NotFound, CorruptContent, ValueError, AttributeError) as err:
            if configs.get(config_digest):
                log.error("images.gc_skipped", config=config_digest, error=str(err))
                return None
            continue  # a container's image whose config is gone: nothing of it left to keep
        blobs.add(config_digest)
        diff_ids.update(listed)
    return blobs, diff_ids


def _sweep_blobs(store: ImageStore, keep: set[str], expected: set[str], cutoff: float) -> tuple[list[str], int]:
    blob_dir = store.content.path(f"{ALGORITHM}:{'0' * 64}").parent
    swept: list[str] = []
    freed = 0
    for entry in sorted(os.scandir(blob_dir), key=lambda e: e.name):
        digest = f"{ALGORITHM}:{entry.name}"
        if not _HEX.match(entry.name) or digest in keep:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if digest not in expected and info.st_ctime > cutoff:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            swept.append(digest)
            freed += info.st_size
    if swept:
        fsync_dir(blob_dir)
    return swept, freed


def _sweep_layers(layers_root: Path, keep: set[str], expected: set[str], cutoff: float) -> list[str]:
    keep_hex = {digest_hex(d) for d in keep if _HEX.match(d.partition(":")[2])}
    swept: list[str] = []
    for entry in sorted(os.scandir(layers_root), key=lambda e: e.name):
        if not _HEX.match(entry.name) or entry.name in keep_hex:
            continue
        diff_id = f"{ALGORITHM}:{entry.name}"
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if diff_id not in expected and info.st_ctime > cutoff:
            continue
        if remove_layer_dir(layers_root, entry.name):
            swept.append(diff_id)
    return swept


def remove_layer_dir(layers_root: Path, name: str) -> bool:
    """Rename first, so a crash mid-removal never leaves a half layer under its real name."""
    doomed = layers_root / f"{TEMP_PREFIX}deleted-{name}-{os.getpid()}"
    try:
        os.rename(layers_root / name, doomed)
    except FileNotFoundError:
        return False
    fsync_dir(layers_root)
    _remove_tree(doomed)
    log.info("layer.removed", diff_id=f"{ALGORITHM}:{name}" if _HEX.match(name) else name)
    return True


def _remove_leftovers(store: ImageStore) -> list[str]:
    removed: list[str] = []
    ingest = store.content.root / INGEST_DIR
    for entry in _entries(ingest):
        _remove_any(Path(entry.path))
        removed.append(f"{INGEST_DIR}/{entry.name}")
    for entry in _entries(store.content.root):
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
            _remove_any(Path(entry.path))
            removed.append(entry.name)
    for entry in _entries(store.layers_root):
        if entry.name.startswith(TEMP_PREFIX):
            _remove_any(Path(entry.path))
            removed.append(f"layers/{entry.name}")
    return removed


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _remove_any(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        _remove_tree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_tree(path: Path) -> None:
    # Unpacked layers may hold read-only dirs; rmtree's own chmod-free walk handles
    # them as root. Whatever a concurrent remover took first is simply gone.
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("layer.remove_incomplete", path=str(path))

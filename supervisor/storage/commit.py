"""Commit: a container's upper dir as a new layer on its image, and the new image's config.

The layer is the upper dir as it is (as Docker's overlay2 driver exports
it): every entry in walk order, whiteouts (0/0 character devices) as empty
`.wh.<name>` files, opaque directories followed by a `.wh..wh..opq`
entry, hard links within the layer as tar hard links, owners, modes,
seconds-precision mtimes, device numbers, and the xattrs a layer may carry
(user.*, security.capability; never trusted.overlay.*). Sockets are left
out, as Docker does. File data is read through descriptors opened with
O_NOFOLLOW relative to their directory's descriptor (see changes.py), so
a container that keeps running (`--pause=false`) cannot make the commit
read a host file; a file that changes size meanwhile is cut or
zero-padded to the size in its header.

The tar is hashed as it is written (its diff ID), and compressed with
gzip when asked (`compress_level`); an empty upper dir yields no layer at
all (Docker's `empty_layer` history entry).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from supervisor.errors import NotFound
from supervisor.storage.changes import UpperEntry, walk_upper
from supervisor.storage.content import INGEST_DIR
from supervisor.storage.images import Image, ImageStore
from supervisor.storage.instructions import apply_changes
from supervisor.storage.tar_members import OPAQUE_WHITEOUT, WHITEOUT_PREFIX

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_END_OF_ARCHIVE = b"\0" * 1024  # two zero blocks, no record padding (as Go's archive/tar writes it)
_BLOCK = 512
# The image config keys a commit carries over (Docker's container Config holds more, which
# only make sense for a container).
IMAGE_CONFIG_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


@dataclass(frozen=True)
class WrittenLayer:
    path: Path
    diff_id: str  # sha256 of the tar
    digest: str  # sha256 of the file written (the diff ID again when not compressed)
    tar_size: int
    entries: int  # 0: the upper dir was empty


class _Sink:
    """Tar bytes in; hashed, counted, optionally gzipped, written to `out`."""

    def __init__(self, out: BinaryIO, compress_level: int | None) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        # wbits 31: a gzip stream with a fixed header (no name, mtime 0), so equal tars compress equally.
        self._zip = zlib.compressobj(compress_level, zlib.DEFLATED, 31) if compress_level is not None else None
        self.tar_size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._tar_hash.update(data)
        self.tar_size += len(data)
        if self._zip is not None:
            data = self._zip.compress(data)
            if not data:
                return
        self._blob_hash.update(data)
        self._out.write(data)

    def finish(self) -> tuple[str, str]:
        if self._zip is not None:
            tail = self._zip.flush()
            self._blob_hash.update(tail)
            self._out.write(tail)
        return f"sha256:{self._tar_hash.hexdigest()}", f"sha256:{self._blob_hash.hexdigest()}"


def write_layer(upper: Path, out_path: Path, *, compress_level: int | None = None) -> WrittenLayer:
    """Write the layer tar of `upper` to `out_path` (created or truncated)."""
    with open(out_path, "wb", buffering=_CHUNK) as out:
        sink = _Sink(out, compress_level)
        entries = 0
        links: dict[tuple[int, int], str] = {}
        for entry in walk_upper(upper):
            entries += _write_entry(sink, entry, links)
        if entries:
            sink.write(_END_OF_ARCHIVE)
        diff_id, digest = sink.finish()
        out.flush()
        os.fsync(out.fileno())
    return WrittenLayer(out_path, diff_id, digest, sink.tar_size, entries)


def _write_entry(sink: _Sink, entry: UpperEntry, links: dict[tuple[int, int], str]) -> int:
    st = entry.stat
    name = "/".join(entry.parts)
    if entry.whiteout:
        parent = "/".join(entry.parts[:-1])
        hidden = f"{parent}/{WHITEOUT_PREFIX}{entry.name}" if parent else f"{WHITEOUT_PREFIX}{entry.name}"
        sink.write(_header(hidden, tarfile.REGTYPE, st, mode=0o600))
        return 1
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        sink.write(_header(name + "/", tarfile.DIRTYPE, st, xattrs=entry.xattrs))
        if entry.opaque:
            sink.write(_header(f"{name}/{OPAQUE_WHITEOUT}", tarfile.REGTYPE, st, mode=st.st_mode & 0o777, mtime=0))
            return 2
        return 1
    if kind == stat.S_IFSOCK:
        return 0
    if st.st_nlink > 1:
        first = links.setdefault((st.st_dev, st.st_ino), name)
        if first != name:
            sink.write(_header(name, tarfile.LNKTYPE, st, linkname=first))
            return 1
    if kind == stat.S_IFREG:
        return _write_file(sink, entry, name)
    if kind == stat.S_IFLNK:
        sink.write(_header(name, tarfile.SYMTYPE, st, linkname=entry.link_target or "", xattrs=entry.xattrs))
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        tar_type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        sink.write(
            _header(name, tar_type, st, device=(os.major(st.st_rdev), os.minor(st.st_rdev)), xattrs=entry.xattrs)
        )
    elif kind == stat.S_IFIFO:
        sink.write(_header(name, tarfile.FIFOTYPE, st, xattrs=entry.xattrs))
    return 1


def _write_file(sink: _Sink, entry: UpperEntry, name: str) -> int:
    try:
        fd = os.open(entry.name, _FILE_FLAGS, dir_fd=entry.parent_fd)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
            log.warning("commit.file_vanished", path=entry.path)
            return 0
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            log.warning("commit.file_replaced", path=entry.path)
            return 0
        size = st.st_size
        sink.write(_header(name, tarfile.REGTYPE, st, size=size, xattrs=entry.xattrs))
        left = size
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                log.warning("commit.file_shrank", path=entry.path, size=size, missing=left)
                sink.write(bytes(left))
                break
            sink.write(chunk)
            left -= len(chunk)
        if size % _BLOCK:
            sink.write(bytes(_BLOCK - size % _BLOCK))
    finally:
        os.close(fd)
    return 1


def _header(
    name: str,
    kind: bytes,
    st: os.stat_result,
    *,
    size: int = 0,
    mode: int | None = None,
    mtime: int | None = None,
    linkname: str = "",
    device: tuple[int, int] | None = None,
    xattrs: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime) if mtime is None else mtime
    info.size = size
    info.linkname = linkname
    if device is not None:
        info.devmajor, info.devminor = device
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape") for key, value in xattrs}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


# -- the new image's config -----------------------------------------------


def merge_container_config(user: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """Docker's commit merge: what the request's config (after --change) leaves unset comes from the container's.

    Env and Labels merge by key (the request's win), ExposedPorts and
    Volumes are united, Cmd and Entrypoint come as a pair unless the
    request set an Entrypoint, Healthcheck fields fill in one by one.
    """
    merged = {key: user.get(key) for key in IMAGE_CONFIG_KEYS if user.get(key) is not None}
    for key in ("User", "WorkingDir", "StopSignal"):
        if not merged.get(key) and container.get(key):
            merged[key] = container[key]
    for key in ("ExposedPorts", "Volumes"):
        united = {**(container.get(key) or {}), **(merged.get(key) or {})}
        if united:
            merged[key] = united
    env = list(merged.get("Env") or [])
    names = {item.partition("=")[0] for item in env}
    env += [item for item in container.get("Env") or [] if item.partition("=")[0] not in names]
    if env:
        merged["Env"] = env
    merged["Labels"] = {**(container.get("Labels") or {}), **(merged.get("Labels") or {})}
    if not merged.get("Entrypoint"):
        if not merged.get("Cmd") and container.get("Cmd"):
            merged["Cmd"] = list(container["Cmd"])
        if "Entrypoint" not in merged and container.get("Entrypoint"):
            merged["Entrypoint"] = list(container["Entrypoint"])
    base_check = container.get("Healthcheck")
    if base_check:
        check = dict(merged.get("Healthcheck") or {})
        for key, value in base_check.items():
            if not check.get(key):
                check[key] = value
        merged["Healthcheck"] = check
    for key in ("OnBuild", "Shell"):
        if key not in merged and container.get(key):
            merged[key] = container[key]
    return merged


def commit_config(
    *,
    base: Mapping[str, Any],
    container_config: Mapping[str, Any],
    request_config: Mapping[str, Any] | None,
    changes: Sequence[str],
    container_id: str,
    author: str,
    comment: str,
    created: str,
) -> dict[str, Any]:
    """The new image's config, without the new history entry (see `history_entry`) and rootfs.

    `request_config` is the body of `POST /commit` (None or {} when absent:
    then the container's config is the starting point, as in Docker).
    """
    start = request_config if request_config else container_config
    changed = apply_changes({key: start[key] for key in IMAGE_CONFIG_KEYS if key in start}, changes)
    config: dict[str, Any] = {
        "architecture": base.get("architecture", ""),
        "os": base.get("os", "linux"),
        "created": created,
        "container": container_id,
        "config": merge_container_config(changed, container_config),
        "history": list(base.get("history") or []),
    }
    if base.get("variant"):
        config["variant"] = base["variant"]
    if author:
        config["author"] = author
    if comment:
        config["comment"] = comment
    return config


def history_entry(*, created: str, created_by: str, author: str, comment: str, empty_layer: bool) -> dict[str, Any]:
    """Docker's history record of a commit or import (empty fields left out, as Go's omitempty does)."""
    entry: dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    return entry


# -- storing --------------------------------------------------------------


def new_ingest_file(store: ImageStore, prefix: str) -> Path:
    """An empty temp file in the store's ingest dir (same filesystem as the blobs; crash leftovers
    there are removed at the next daemon start, see storage/gc.py)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tar", dir=store.content.root / INGEST_DIR)
    os.close(fd)
    return Path(name)


def store_commit(
    store: ImageStore,
    upper: Path,
    base: Image,
    config: Mapping[str, Any],
    *,
    created_by: str,
    tags: Sequence[str],
    compress_level: int | None,
) -> Image:
    """Write `upper` as a layer on `base` and add the image (`config` from `commit_config`).

    Atomic as `ImageStore.add_image` is: until the tables name the image,
    nothing of it is visible, and a kill leaves at most a temp file in
    ingest/ and unreferenced blobs, which recovery and GC remove.
    """
    path = new_ingest_file(store, "commit-")
    try:
        written = write_layer(upper, path, compress_level=compress_level)
        entry = history_entry(
            created=str(config["created"]),
            created_by=created_by,
            author=str(config.get("author", "")),
            comment=str(config.get("comment", "")),
            empty_layer=not written.entries,
        )
        full = {**config, "history": [*config.get("history", []), entry]}
        missing = [digest for digest in base.layer_digests if not store.content.has(digest)]
        if missing:
            raise NotFound(f"layer {missing[0]} of image {base.id} is missing from the store")
        base_layers: list[Path] = [store.content.path(digest) for digest in base.layer_digests]
        layers = [*base_layers, path] if written.entries else base_layers
        image = store.add_image(full, layers, tags, parent=base.id)
    finally:
        path.unlink(missing_ok=True)
    log.info(
        "commit.stored", image=image.id, diff_id=written.diff_id, tar_size=written.tar_size, entries=written.entries
    )
    return image

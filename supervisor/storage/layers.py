"""Unpacking a layer blob once into `layers/<diff-id hex>/`, the overlay lower dir.

One streaming pass: a read-ahead thread (`decompress.ReadAhead`) reads the
blob, decompresses it (gzip, zstd or none) and hashes both the blob and
the tar, while this thread parses the tar (`tar_stream`), vets each member
(`tar_members.check_member`) and creates it (`layer_tree`) with *at()
calls relative to directory descriptors, never following a symlink,
whatever earlier members made. The blob digest and the diff ID are thus
verified by the same read that unpacks. The tree is built in a temp dir
beside its final name and renamed into place after a syncfs: a crash
never leaves a half layer under the final name, a rejected layer leaves
nothing behind, and of two concurrent unpackers the loser discards its copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import structlog

from supervisor.storage.decompress import GZIP_MAGIC, ZSTD_MAGIC, ReadAhead, decompressed_chunks
from supervisor.storage.digest import ByteSource, DigestingReader, digest_hex, file_digest, validate_digest
from supervisor.storage.errors import CorruptContent, DigestMismatch, InvalidLayer
from supervisor.storage.fsutil import fsync_dir
from supervisor.storage.layer_tree import DIR_FLAGS, OVERLAY_OPAQUE_XATTR, LayerTreeWriter
from supervisor.storage.tar_members import MemberKind, check_member
from supervisor.storage.tar_stream import TarStream

log = structlog.get_logger(__name__)

__all__ = [
    "GZIP_MAGIC",
    "OVERLAY_OPAQUE_XATTR",
    "TEMP_PREFIX",
    "ZSTD_MAGIC",
    "layer_dir",
    "uncompressed_digest",
    "unpack_layer",
]

TEMP_PREFIX = ".tmp-"
# Failures of the machine, not of the layer: let them surface unchanged.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


def layer_dir(layers_root: Path, diff_id: str) -> Path:
    return layers_root / digest_hex(diff_id)


def unpack_layer(blob_path: Path, diff_id: str, layers_root: Path, *, blob_digest: str | None = None) -> Path:
    """The unpacked dir of the layer with `diff_id`, unpacking `blob_path` (gzip or plain tar) if needed.

    `blob_digest`, when given, is verified too (CorruptContent if the blob
    on disk no longer matches it); DigestMismatch if the tar is not `diff_id`.
    """
    validate_digest(diff_id)
    final = layer_dir(layers_root, diff_id)
    if final.is_dir():
        return final
    layers_root.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{digest_hex(diff_id)[:12]}-", dir=layers_root))
    try:
        os.chmod(temp, 0o755)
        with open(blob_path, "rb") as blob:
            actual_blob, actual_diff, size = _extract_verified(blob, temp, diff_id, blob_digest)
        _syncfs(temp)
        try:
            os.rename(temp, final)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            log.debug("layer.unpack_lost_race", diff_id=diff_id)
            _remove_tree(temp)
            return final
    except BaseException:
        _remove_tree(temp)
        raise
    fsync_dir(layers_root)
    log.info("layer.unpacked", diff_id=actual_diff, blob=actual_blob, size=size)
    return final


def uncompressed_digest(blob: ByteSource) -> tuple[str, int]:
    """Diff ID and uncompressed size of a (gzip or zstd) tar blob, without unpacking it."""
    reader = DigestingReader(_ChunkReader(decompressed_chunks(blob)))
    reader.drain()
    return reader.digest, reader.size


class _ChunkReader:
    """A `read()` over an iterator of chunks (each returned whole: callers only drain)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, n: int = -1, /) -> bytes:
        return next(self._chunks, b"")


def _extract_verified(blob: BinaryIO, dest: Path, diff_id: str, blob_digest: str | None) -> tuple[str, str, int]:
    try:
        with ReadAhead(blob) as reader:
            _extract(reader.next_chunk, dest)
            actual_blob, actual_diff, size = reader.finish()
    except InvalidLayer:
        # A damaged blob explains any parse failure better than the failure itself.
        if blob_digest is not None:
            blob.seek(0)
            actual, _ = file_digest(blob)
            if actual != blob_digest:
                raise CorruptContent(f"layer blob {blob_digest} is corrupt: its content hashes to {actual}") from None
        raise
    if blob_digest is not None and actual_blob != blob_digest:
        raise CorruptContent(f"layer blob {blob_digest} is corrupt: its content hashes to {actual_blob}")
    if actual_diff != diff_id:
        raise DigestMismatch(
            f"layer {actual_blob}: uncompressed content hashes to {actual_diff}, but the image names diff ID {diff_id}"
        )
    if size == 0:
        raise InvalidLayer(f"layer {diff_id} is not a valid tar: it is empty")
    return actual_blob, actual_diff, size


def _extract(next_chunk: Callable[[], bytes], dest: Path) -> int:
    """Unpack the tar into `dest`; the number of members."""
    stream = TarStream(next_chunk)
    root_fd = os.open(dest, DIR_FLAGS)
    count = 0
    try:
        writer = LayerTreeWriter(root_fd)
        try:
            while (header := stream.next_header()) is not None:
                count += 1
                member = check_member(header)
                if member is None:
                    continue
                try:
                    writer.apply(member, stream.copy_data if member.kind is MemberKind.FILE else None)
                except OSError as err:
                    if err.errno in _HOST_ERRNOS:
                        raise
                    raise InvalidLayer(f"layer member {member.name!r}: {err.strerror or err}") from err
            writer.finish()
        finally:
            writer.close()
    finally:
        os.close(root_fd)
    return count


def _remove_tree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def _syncfs(path: Path) -> None:
    """Flush the new tree's filesystem once, instead of an fsync per file."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)

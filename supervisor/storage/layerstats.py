"""What a layer blob holds, measured in one streaming pass: its diff ID and sizes.

The diff ID (sha256 of the uncompressed tar) and the tar's size come from
hashing the decompressed stream; the same pass reads the tar headers to
sum what Docker reports as the layer's size (its DiffSize: the bytes of
the regular files and symlinks the layer unpacks to, each path counted
once, hardlinks free), so `images`, `history` and `image inspect` show the
sizes Docker shows for the same layer.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import structlog

from supervisor.storage.digest import ByteSource, DigestingReader
from supervisor.storage.errors import InvalidLayer
from supervisor.storage.layers import GZIP_MAGIC, ZSTD_MAGIC, uncompressed_digest

log = structlog.get_logger(__name__)

_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class LayerStats:
    diff_id: str
    tar_size: int  # bytes of the uncompressed tar
    content_size: int  # bytes of the files it unpacks to (Docker's layer size)
    gzipped: bool


def layer_stats(blob: BinaryIO) -> LayerStats:
    """Measure the (gzip) tar in `blob` from its current position; InvalidLayer if it is neither."""
    head = blob.read(4)
    blob.seek(-len(head), 1)
    gzipped = head.startswith(GZIP_MAGIC)
    if head == ZSTD_MAGIC:
        # Not ours to judge (zstd, garbage): the unpacker's own reading gives its verdict and message.
        diff_id, size = uncompressed_digest(blob)
        return LayerStats(diff_id=diff_id, tar_size=size, content_size=size, gzipped=False)
    stream: ByteSource = gzip.GzipFile(fileobj=blob, mode="rb") if gzipped else blob
    reader = DigestingReader(stream)
    sizes: dict[str, int] | None = {}
    try:
        if head:
            try:
                sizes = _member_sizes(reader)
            except tarfile.TarError as err:
                # Judging a bad tar is the unpacker's job (with its own messages); here it only has no sizes.
                log.warning("layer.unmeasurable", error=str(err))
                sizes = None
        reader.drain()
    except (EOFError, OSError, zlib.error) as err:
        raise InvalidLayer(f"layer is not a valid gzip stream: {err}") from err
    content_size = sum(sizes.values()) if sizes is not None else reader.size
    return LayerStats(diff_id=reader.digest, tar_size=reader.size, content_size=content_size, gzipped=gzipped)


def _member_sizes(reader: DigestingReader) -> dict[str, int]:
    """Path -> size of what it unpacks to; a later member for the same path replaces an earlier one."""
    sizes: dict[str, int] = {}
    with tarfile.open(fileobj=reader, mode="r|", bufsize=_BUFSIZE) as archive:  # type: ignore[call-overload]
        for info in archive:
            name = info.name.strip("/")
            if info.isreg():
                sizes[name] = info.size
            elif info.issym():
                sizes[name] = len(info.linkname.encode())
            else:
                sizes.pop(name, None)
    return sizes

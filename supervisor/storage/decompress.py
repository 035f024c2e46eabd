"""Layer blobs as a stream of decompressed chunks (gzip, zstd or plain tar), optionally read ahead in a thread.

`decompressed_chunks` sniffs the compression from the first bytes and
yields the tar in chunks of at most CHUNK bytes whatever the compression
ratio, so a decompression bomb costs time, never memory. Concatenated
gzip members and zstd frames are read as one stream, as `gzip -d` and
`zstd -d` do; trailing zero padding after a gzip stream is allowed.

`ReadAhead` runs that loop, and the hashing of both the blob and the
tar, in a thread of its own feeding a small bounded queue: zlib, zstd and
hashlib release the GIL, so decompressing and hashing overlap with the
unpacker's system calls on a second core, and memory stays at a few chunks.

zstd needs `compression.zstd` (Python 3.14) or its backport, the
`backports.zstd` package; without either a zstd layer is refused by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import queue
import threading
import zlib
from collections.abc import Iterator
from types import ModuleType

from supervisor.storage.digest import ALGORITHM, ByteSource
from supervisor.storage.errors import InvalidLayer

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_QUEUE_CHUNKS = 16  # at most 16 MiB read ahead
ZSTD_MISSING = "zstd-compressed layers need the backports.zstd package on Python < 3.14 (pip install backports.zstd)"


def compression_of(head: bytes) -> str:
    """ "gzip", "zstd" or "none", from a blob's first four bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def zstd_module() -> ModuleType | None:
    for name in ("compression.zstd", "backports.zstd"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    return None


def decompressed_chunks(blob: ByteSource) -> Iterator[bytes]:
    """The tar inside `blob`, in chunks of at most CHUNK bytes. InvalidLayer for a broken stream."""
    return _chunks(blob.read(CHUNK), blob)


def _chunks(head: bytes, blob: ByteSource) -> Iterator[bytes]:
    compression = compression_of(head)
    if compression == "gzip":
        return _gzip_chunks(head, blob)
    if compression == "zstd":
        return _zstd_chunks(head, blob)
    return _plain_chunks(head, blob)


def _plain_chunks(head: bytes, blob: ByteSource) -> Iterator[bytes]:
    while head:
        yield head
        head = blob.read(CHUNK)


def _gzip_chunks(head: bytes, blob: ByteSource) -> Iterator[bytes]:
    # wbits 31: a gzip wrapper, whose CRC-32 and length trailer zlib verifies.
    decompressor = zlib.decompressobj(31)
    fed = False
    data = head
    try:
        while True:
            if not data:
                data = blob.read(CHUNK)
                if not data:
                    break
            if decompressor.eof:
                if data.startswith(GZIP_MAGIC[:1]):
                    decompressor, fed = zlib.decompressobj(31), False  # the next member
                elif not data.strip(b"\0"):
                    data = b""  # zero padding after the last member, which gzip -d allows
                    continue
                else:
                    raise InvalidLayer("layer is not a valid gzip stream: trailing garbage after its end")
            out = decompressor.decompress(data, CHUNK)
            fed = True
            if out:
                yield out
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
    except zlib.error as err:
        raise InvalidLayer(f"layer is not a valid gzip stream: {err}") from None
    if fed and not decompressor.eof:
        raise InvalidLayer("layer is not a valid gzip stream: it is truncated")


def _zstd_chunks(head: bytes, blob: ByteSource) -> Iterator[bytes]:
    zstd = zstd_module()
    if zstd is None:
        raise InvalidLayer(ZSTD_MISSING)
    decompressor = zstd.ZstdDecompressor()
    fed = False
    data = head
    try:
        while True:
            if not data and decompressor.needs_input:
                data = blob.read(CHUNK)
                if not data:
                    break
            out = decompressor.decompress(data, CHUNK)
            fed, data = True, b""
            if out:
                yield out
            if decompressor.eof:
                data = decompressor.unused_data  # the next frame, if any
                decompressor, fed = zstd.ZstdDecompressor(), False
    except zstd.ZstdError as err:
        raise InvalidLayer(f"layer is not a valid zstd stream: {err}") from None
    if fed and not decompressor.eof:
        raise InvalidLayer("layer is not a valid zstd stream: it is truncated")


class _HashingSource:
    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._source.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


_END = object()


class ReadAhead:
    """Decompresses and hashes `blob` in a thread; `next_chunk` hands over the tar, `b""` at its end.

    Use as a context manager: leaving it stops and joins the thread, even
    when the consumer gave up half way. `finish()` reads whatever the
    consumer left (tar padding, trailing blocks) so the digests cover the
    whole blob, and returns them.
    """

    def __init__(self, blob: ByteSource) -> None:
        self._source = _HashingSource(blob)
        self._queue: queue.Queue[object] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._tar_hash = hashlib.sha256()
        self._tar_size = 0
        self._plain = False
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="layer-read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def next_chunk(self) -> bytes:
        if self._ended:
            return b""
        item = self._queue.get()
        if item is _END:
            self._ended = True
            return b""
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, bytes)
        return item

    def finish(self) -> tuple[str, str, int]:
        """(blob digest, tar digest, tar size) once the whole blob has been read."""
        while self.next_chunk():
            pass
        self._thread.join()
        blob_digest = f"{ALGORITHM}:{self._source.hash.hexdigest()}"
        if self._plain:
            return blob_digest, blob_digest, self._source.size
        return blob_digest, f"{ALGORITHM}:{self._tar_hash.hexdigest()}", self._tar_size

    def _run(self) -> None:
        try:
            head = self._source.read(CHUNK)
            # A plain tar is its own blob: hash it once.
            self._plain = compression_of(head) == "none"
            for chunk in _chunks(head, self._source):
                if not self._plain:
                    self._tar_hash.update(chunk)
                    self._tar_size += len(chunk)
                if self._stop.is_set():
                    return
                self._queue.put(chunk)
            self._queue.put(_END)
        except BaseException as err:  # handed to the consumer, which raises it
            self._queue.put(err)

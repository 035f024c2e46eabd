"""A streaming tar reader for layer unpacking: headers parsed here, file data copied straight to descriptors.

Why not `tarfile`: its stream mode keeps every TarInfo for the archive's
lifetime, reads PAX headers and GNU long names whole however large they
claim to be, expands sparse files into their zeros, and costs tens of
microseconds of Python per member. This reader keeps nothing per member,
bounds everything it holds in memory (`MAX_SPECIAL`), writes sparse files
sparse, and parses a header in a few microseconds.

Formats: POSIX ustar and pax (extended and global headers), GNU (long
names and links, base-256 numbers, old and pax 0.0/0.1/1.0 sparse files)
and v7. Chunks come from a callable (a decompressing, hashing reader
thread); `b""` means the end of the stream. An archive may end with a
zero block or simply at a header boundary, as GNU tar and Go's reader allow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from supervisor.storage.errors import InvalidLayer, UnsafeLayer
from supervisor.storage.tar_fields import (
    Sparse,
    check_sparse,
    number,
    octal,
    pax_int,
    pax_records,
    pax_sparse_map,
    pax_time_ns,
    sparse_entries,
    string_field,
    text,
    verify_checksum,
)

BLOCK = 512
# PAX headers, GNU long names and sparse maps are read into memory: bounded, as Go's archive/tar does.
MAX_SPECIAL = 1 << 20
REGULAR_TYPES = frozenset({b"0", b"\0", b"7", b"S"})
_ZERO_BLOCK = bytes(BLOCK)
_USTAR_MAGIC = b"ustar\x00"
_GNU_MAGIC = b"ustar "


class TarHeader(NamedTuple):
    """One member, shaped like `tarfile.TarInfo` where `check_member` reads it (a NamedTuple: built per member)."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    mtime: float
    size: int  # bytes of data stored in the archive
    linkname: str
    devmajor: int
    devminor: int
    pax_headers: dict[str, str]
    sparse: Sparse | None  # (offset, length) data segments of a sparse file
    realsize: int  # the file's length (differs from `size` for sparse files)
    offset: int  # of the header in the tar stream, for messages
    mtime_ns: int  # exact: a pax mtime has nanoseconds that a float cannot hold

    def isreg(self) -> bool:
        return self.type in REGULAR_TYPES


class TarStream:
    """Headers one by one (`next_header`); a regular member's data goes to a descriptor (`copy_data`)."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self._globals: dict[str, str] = {}
        self._pending = 0  # data bytes (with padding) of the current member not consumed yet
        self._current: TarHeader | None = None
        self._eof = False

    @property
    def position(self) -> int:
        return self._base + self._pos

    def next_header(self) -> TarHeader | None:
        """The next member, None at the end of the archive (InvalidLayer if it is malformed)."""
        self._skip(self._pending)
        self._pending = 0
        self._current = None
        pax: dict[str, str] = {}
        longname: str | None = None
        longlink: str | None = None
        sparse_00: list[tuple[str, int]] | None = None
        while True:
            offset = self.position
            block = self._read_header_block()
            if block is None:
                if pax or longname is not None or longlink is not None:
                    raise InvalidLayer(f"tar ends after an extended header at offset {offset}")
                return None
            kind = block[156:157]
            size = octal(block[124:136], "size", offset)
            if size < 0:
                raise InvalidLayer(f"tar header at offset {offset}: negative size")
            if kind in (b"x", b"g", b"L", b"K"):
                data = self._read_special(size, kind, offset)
                if kind == b"x":
                    records, zeros = pax_records(data, offset)
                    pax.update(records)
                    sparse_00 = zeros or sparse_00
                elif kind == b"g":
                    records, _ = pax_records(data, offset)
                    self._globals.update(records)
                elif kind == b"L":
                    longname = text(data.split(b"\0", 1)[0])
                else:
                    longlink = text(data.split(b"\0", 1)[0])
                continue
            header = self._header(block, kind, size, offset, pax, longname, longlink, sparse_00)
            self._pending = header.size + (-header.size % BLOCK)
            if header.sparse is not None and "GNU.sparse.major" in pax:
                header = self._read_sparse_10(header)
            self._current = header
            return header

    def copy_data(self, fd: int) -> None:
        """Write the current regular member's content to `fd` (sparse files with their holes left unwritten)."""
        header = self._current
        assert header is not None and self._pending >= header.size
        padding = self._pending - header.size
        if header.sparse is None:
            self._copy(fd, header.size, header)
        else:
            stored = 0
            for start, length in header.sparse:
                if length:
                    os.lseek(fd, start, os.SEEK_SET)
                    self._copy(fd, length, header)
                    stored += length
            os.ftruncate(fd, header.realsize)
            self._skip(header.size - stored)
        self._pending = padding

    # -- headers ------------------------------------------------------------

    def _header(
        self,
        block: bytes,
        kind: bytes,
        size: int,
        offset: int,
        pax: dict[str, str],
        longname: str | None,
        longlink: str | None,
        sparse_00: list[tuple[str, int]] | None,
    ) -> TarHeader:
        if longname is not None:
            name = longname
        else:
            name = string_field(block, 0, 100)
            if block[345] and block[257:263] == _USTAR_MAGIC:
                name = string_field(block, 345, 500) + "/" + name
        linkname = longlink if longlink is not None else (string_field(block, 157, 257) if block[157] else "")
        mode = octal(block[100:108], "mode", offset)
        uid = octal(block[108:116], "uid", offset)
        gid = octal(block[116:124], "gid", offset)
        mtime_ns = octal(block[136:148], "mtime", offset) * 1_000_000_000
        devmajor = devminor = 0
        if kind in (b"3", b"4"):
            devmajor = octal(block[329:337], "devmajor", offset)
            devminor = octal(block[337:345], "devminor", offset)
        sparse: Sparse | None = None
        realsize = size
        if kind == b"S":
            sparse, realsize = self._old_gnu_sparse(block, offset)
            check_sparse(sparse, size, realsize, offset)
        # Global headers set defaults; a path, link or size in one would name every member alike.
        headers = {**self._globals, **pax} if self._globals else pax
        if headers:
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            uid = pax_int(headers, "uid", uid, offset)
            gid = pax_int(headers, "gid", gid, offset)
            if "mtime" in headers:
                mtime_ns = pax_time_ns(headers["mtime"], offset)
            if "size" in pax:
                size = realsize = pax_int(pax, "size", size, offset)
            if sparse_00 is not None or "GNU.sparse.map" in pax or "GNU.sparse.major" in pax:
                name = pax.get("GNU.sparse.name", name)
                realsize = pax_int(pax, "GNU.sparse.realsize", pax_int(pax, "GNU.sparse.size", size, offset), offset)
                sparse = pax_sparse_map(pax, sparse_00, offset)
                if "GNU.sparse.major" not in pax:
                    check_sparse(sparse, size, realsize, offset)
        if kind == b"\0" and name.endswith("/"):
            kind = b"5"  # an old-style directory: a regular entry named with a trailing slash
        if min(uid, gid, mode) < 0 or size < 0 or realsize < 0:
            raise InvalidLayer(f"tar header at offset {offset} ({name!r}): negative number")
        return TarHeader(
            name,
            kind,
            mode,
            uid,
            gid,
            mtime_ns / 1_000_000_000,
            size,
            linkname,
            devmajor,
            devminor,
            headers,
            sparse,
            realsize,
            offset,
            mtime_ns,
        )

    def _old_gnu_sparse(self, block: bytes, offset: int) -> tuple[Sparse, int]:
        entries = sparse_entries(block[386:482], 4, offset)
        extended = block[482]
        realsize = number(block[483:495], "realsize", offset)
        extensions = 0
        while extended:
            extensions += 1
            if extensions * BLOCK > MAX_SPECIAL:
                raise UnsafeLayer(f"tar member at offset {offset}: sparse map larger than {MAX_SPECIAL} bytes")
            extension = self._read_exact(BLOCK, offset)
            entries += sparse_entries(extension[0:504], 21, offset)
            extended = extension[504]
        return tuple(entries), realsize

    def _read_sparse_10(self, header: TarHeader) -> TarHeader:
        """pax sparse 1.0: the map is a list of decimals at the start of the data, padded to a block."""
        consumed = 0
        lines: list[int] = []
        text = b""
        wanted = None
        while wanted is None or len(lines) < wanted:
            newline = text.find(b"\n")
            if newline < 0:
                if consumed + BLOCK > min(header.size, MAX_SPECIAL):
                    raise InvalidLayer(f"tar member {header.name!r}: truncated sparse map")
                text += self._read_exact(BLOCK, header.offset)
                consumed += BLOCK
                continue
            item, text = text[:newline], text[newline + 1 :]
            if not item.isdigit():
                raise InvalidLayer(f"tar member {header.name!r}: malformed sparse map")
            lines.append(int(item))
            if wanted is None:
                wanted = 1 + 2 * lines[0]
                if wanted * 2 > MAX_SPECIAL:
                    raise UnsafeLayer(f"tar member {header.name!r}: sparse map larger than {MAX_SPECIAL} bytes")
        sparse = tuple(zip(lines[1::2], lines[2::2], strict=True))
        size = header.size - consumed
        self._pending -= consumed
        check_sparse(sparse, size, header.realsize, header.offset)
        return header._replace(sparse=sparse, size=size)

    # -- buffer -------------------------------------------------------------

    def _refill(self) -> bool:
        if self._eof:
            return False
        chunk = self._next_chunk()
        self._base += len(self._buf)
        if not chunk:
            self._eof = True
            self._buf = b""
            self._view = memoryview(self._buf)
            self._pos = 0
            return False
        self._buf = chunk
        self._view = memoryview(chunk)
        self._pos = 0
        return True

    def _read_header_block(self) -> bytes | None:
        pos = self._pos
        if pos + BLOCK <= len(self._buf):
            block = self._buf[pos : pos + BLOCK]
            self._pos = pos + BLOCK
        else:
            start = self.position
            block = self._read_upto(BLOCK)
            if not block:
                return None
            if len(block) < BLOCK:
                raise InvalidLayer(f"tar is truncated: a partial header at offset {start}")
        if block == _ZERO_BLOCK:
            return None
        verify_checksum(block, self.position - BLOCK)
        return block

    def _read_upto(self, n: int) -> bytes:
        parts = []
        while n:
            available = len(self._buf) - self._pos
            if not available:
                if not self._refill():
                    break
                continue
            take = min(available, n)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            n -= take
        return b"".join(parts)

    def _read_exact(self, n: int, offset: int) -> bytes:
        data = self._read_upto(n)
        if len(data) < n:
            raise InvalidLayer(f"tar is truncated: member at offset {offset} ends early")
        return data

    def _read_special(self, size: int, kind: bytes, offset: int) -> bytes:
        if size > MAX_SPECIAL:
            what = {b"x": "pax header", b"g": "pax global header", b"L": "GNU long name", b"K": "GNU long link"}[kind]
            raise UnsafeLayer(
                f"tar member at offset {offset}: {what} of {size} bytes (more than {MAX_SPECIAL}); refusing to read it"
            )
        data = self._read_exact(size, offset)
        self._skip(-size % BLOCK)
        return data

    def _skip(self, n: int) -> None:
        while n:
            available = len(self._buf) - self._pos
            if not available:
                if not self._refill():
                    raise InvalidLayer(f"tar is truncated: {n} bytes of member data missing at offset {self.position}")
                continue
            take = min(available, n)
            self._pos += take
            n -= take

    def _copy(self, fd: int, n: int, header: TarHeader) -> None:
        write = os.write
        while n:
            pos = self._pos
            available = len(self._buf) - pos
            if not available:
                if not self._refill():
                    raise InvalidLayer(f"tar is truncated: member {header.name!r} ends early")
                continue
            take = available if available < n else n
            view = self._view[pos : pos + take]
            written = write(fd, view)
            while written < take:
                written += write(fd, view[written:])
            self._pos = pos + take
            n -= take

"""Building small layer tars for tests, entry by entry."""

from __future__ import annotations

import gzip
import io
import tarfile

MTIME = 1_600_000_000

Entry = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = mtime
    return info


def file(name: str, data: bytes = b"", mode: int = 0o644, **kw: int) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755, **kw: int) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, **kw), None


def symlink(name: str, target: str, **kw: int) -> Entry:
    info = _info(name, tarfile.SYMTYPE, 0o777, **kw)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def device(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o666) -> Entry:
    info = _info(name, kind, mode)
    info.devmajor = major
    info.devminor = minor
    return info, None


def with_pax(entry: Entry, headers: dict[str, str]) -> Entry:
    entry[0].pax_headers = dict(headers)
    return entry


def tar_bytes(*entries: Entry, gzipped: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    if not gzipped:
        return raw.getvalue()
    return gzip.compress(raw.getvalue(), mtime=0)


def plain_tar(compressed_or_plain: bytes) -> bytes:
    """The uncompressed tar of a layer blob (for computing its diff ID)."""
    if compressed_or_plain[:2] == b"\x1f\x8b":
        return gzip.decompress(compressed_or_plain)
    return compressed_or_plain

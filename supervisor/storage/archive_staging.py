"""Reading an image archive (`docker load` input) off a stream into a private staging directory.

Archives put their index (manifest.json, index.json) wherever their writer
liked, usually after the layers, so nothing can be decided until the whole
tar has been read. Every regular member is therefore copied, hashed on
the way, to a numbered file under `ROOT/staging/load-*/` — never to a path
taken from the archive — and indexed by its normalized archive path;
symlinks and hardlinks between members (podman writes `<id>/layer.tar ->
../<diff id>.tar`) are kept as aliases resolved only inside the archive.
Nothing reaches the image store until the archive has been verified.

A staging dir is flocked while its load runs. `sweep_stale` removes the
unlocked ones a killed loader left behind; creating and sweeping both hold
`staging/.lock`, so a sweep never takes a dir between its creation and its
lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import InvalidArgument
from supervisor.storage.digest import ALGORITHM, ByteSource

log = structlog.get_logger(__name__)

STAGING_DIR = "staging"
_PREFIX = "load-"
_LOCK = ".lock"
_CHUNK = 1 << 20
MAX_MEMBERS = 100_000
# manifest.json, index.json, image configs and manifests are read into memory: cap them.
MAX_JSON_BYTES = 16 << 20
# PAX and GNU long-name headers are read into memory by tarfile.
MAX_EXTENDED_HEADER = 1 << 20
MAX_LINK_HOPS = 16
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class InvalidArchive(InvalidArgument):
    """The archive is not a loadable image archive: malformed, incomplete, hostile or inconsistent."""


@dataclass(frozen=True)
class StagedFile:
    name: str  # normalized archive path
    path: Path  # where its bytes are staged
    digest: str  # sha256 of its bytes
    size: int


@dataclass
class ArchiveIndex:
    """What the archive holds: regular files by normalized path, and links between them."""

    files: dict[str, StagedFile] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # normalized path -> normalized target path

    def has(self, name: str) -> bool:
        try:
            self.lookup(name)
        except InvalidArchive:
            return False
        return True

    def lookup(self, name: str, what: str = "file") -> StagedFile:
        """The staged file `name` refers to, following links inside the archive; InvalidArchive if absent."""
        path = normalize(name, what)
        for _ in range(MAX_LINK_HOPS):
            staged = self.files.get(path)
            if staged is not None:
                return staged
            target = self.links.get(path)
            if target is None:
                raise InvalidArchive(f"invalid archive: {what} {name!r} is not in the archive")
            path = target
        raise InvalidArchive(f"invalid archive: too many levels of links resolving {what} {name!r}")

    def read_json(self, name: str, what: str) -> Any:
        staged = self.lookup(name, what)
        return parse_json(read_small(staged, what), what)


def read_small(staged: StagedFile, what: str) -> bytes:
    if staged.size > MAX_JSON_BYTES:
        raise InvalidArchive(f"invalid archive: {what} {staged.name!r} is {staged.size} bytes, over the limit")
    return staged.path.read_bytes()


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as err:
        raise InvalidArchive(f"invalid archive: {what} is not valid JSON: {err}") from None


def normalize(name: str, what: str = "member") -> str:
    """An archive path as `a/b/c`; InvalidArchive for absolute paths, `..`, NUL or an empty name."""
    if not name or "\0" in name:
        raise InvalidArchive(f"invalid archive: {what} has an empty or invalid name {name!r}")
    if name.startswith("/"):
        raise InvalidArchive(f"invalid archive: {what} {name!r} is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArchive(f"invalid archive: {what} {name!r} escapes the archive with '..'")
    if not parts:
        raise InvalidArchive(f"invalid archive: {what} {name!r} names the archive root")
    return "/".join(parts)


@contextlib.contextmanager
def staging_dir(root: Path) -> Iterator[Path]:
    """A fresh staging dir under `root/staging`, locked while the block runs and removed afterwards."""
    base = root / STAGING_DIR
    base.mkdir(parents=True, exist_ok=True)
    with _global_lock(base):
        path = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep_stale(root: Path) -> list[str]:
    """Remove the staging dirs of loads that died (their lock is free); their names."""
    base = root / STAGING_DIR
    if not base.is_dir():
        return []
    removed = []
    with _global_lock(base):
        for entry in base.iterdir():
            if not entry.name.startswith(_PREFIX) or not entry.is_dir():
                continue
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live load
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
            finally:
                os.close(fd)
    if removed:
        log.info("archive.staging_swept", dirs=removed)
    return removed


@contextlib.contextmanager
def _global_lock(base: Path) -> Iterator[None]:
    fd = os.open(base / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def stage_archive(source: ByteSource, dest: Path) -> ArchiveIndex:
    """Read the whole (plain, gzip, bzip2 or xz) tar from `source` into `dest`; its index."""
    stream = io.BufferedReader(_RawSource(source), buffer_size=_CHUNK)
    head = stream.peek(512)[:512]
    if not head:
        raise InvalidArchive("invalid archive: no data (empty input)")
    if head.startswith(ZSTD_MAGIC):
        raise InvalidArchive("invalid archive: zstd-compressed archives are not supported; decompress it first")
    index = ArchiveIndex()
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=BoundedTarInfo) as archive:
            for member in archive:
                count += 1
                if count > MAX_MEMBERS:
                    raise InvalidArchive(f"invalid archive: more than {MAX_MEMBERS} entries")
                _stage_member(archive, member, dest, count, index)
    except (tarfile.TarError, EOFError, OSError) as err:
        if isinstance(err, OSError) and not _is_format_error(err):
            raise
        raise InvalidArchive(f"invalid archive: not a readable (compressed) tar: {err}") from None
    if count == 0:
        raise InvalidArchive("invalid archive: it holds no files")
    log.info("archive.staged", files=len(index.files), links=len(index.links))
    return index


def _stage_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, number: int, index: ArchiveIndex
) -> None:
    if member.isdir():
        normalize(member.name)
        return
    name = normalize(member.name)
    if name in index.files or name in index.links:
        raise InvalidArchive(f"invalid archive: {name!r} appears twice")
    if member.issym():
        index.links[name] = _link_target(name, member.linkname, relative_to_member=True)
        return
    if member.islnk():
        index.links[name] = _link_target(name, member.linkname, relative_to_member=False)
        return
    if not member.isreg() or member.issparse():
        raise InvalidArchive(f"invalid archive: {name!r} is not a regular file, directory or link")
    _check_space(dest, member.size, name)
    data = archive.extractfile(member)
    assert data is not None
    path = dest / str(number)
    hasher = hashlib.sha256()
    written = 0
    with open(path, "xb") as out:
        while chunk := data.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if written != member.size:
        raise InvalidArchive(f"invalid archive: {name!r} is truncated ({written} of {member.size} bytes)")
    index.files[name] = StagedFile(name=name, path=path, digest=f"{ALGORITHM}:{hasher.hexdigest()}", size=written)


def _link_target(name: str, target: str, *, relative_to_member: bool) -> str:
    if not target or "\0" in target:
        raise InvalidArchive(f"invalid archive: link {name!r} has an empty target")
    if target.startswith("/"):
        raise InvalidArchive(f"invalid archive: link {name!r} points to the absolute path {target!r}")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target) if relative_to_member else target)
    if joined == ".." or joined.startswith("../") or joined == ".":
        raise InvalidArchive(f"invalid archive: link {name!r} -> {target!r} points outside the archive")
    return normalize(joined)


def free_bytes(path: Path) -> int:
    """What an unprivileged writer may still write on the filesystem of `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _check_space(dest: Path, size: int, name: str) -> None:
    free = free_bytes(dest)
    if size > free:
        raise InvalidArchive(
            f"invalid archive: {name!r} claims {size} bytes, more than the {free} bytes free where it would be staged"
        )


def _is_format_error(err: OSError) -> bool:
    # gzip.BadGzipFile, lzma/bz2 errors are OSError subclasses without errno; disk errors have one.
    return err.errno is None


class _RawSource(io.RawIOBase):
    """A ByteSource as a raw stream, so BufferedReader can peek at it."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads PAX and GNU long-name headers whole into memory: refuse absurd ones first."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        long_names = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in extended + long_names and self.size > MAX_EXTENDED_HEADER:
            raise InvalidArchive(f"invalid archive: an extended tar header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]

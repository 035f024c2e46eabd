"""Extracting a tar into a directory that someone else controls (docker cp into a container, or
a container's tar onto the host), as moby's Untar does but without trusting the tree.

The destination descriptor is the root for every member: each parent is
resolved with RESOLVE_IN_ROOT (storage/inroot.py), so a symlink already in
the tree, or one an earlier member planted (`x -> /`, `x -> ../../..`),
is followed as chroot would follow it, inside the destination, never
above it; the final component is always created with *at() calls that do
not follow it (O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, linkat).
Names are vetted by tar_members.archive_path_parts (no `..`, no NUL) after
Docker's normalisation (a leading `/` dropped). Device nodes are refused:
corral has no devices cgroup to keep a container from using one. A mount
point (a running container's volume, its /etc/hosts) is never replaced.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol, cast

import structlog

from supervisor.errors import CorralError, InvalidArgument
from supervisor.storage.errors import UnsafeLayer
from supervisor.storage.inroot import DIR_FLAGS, make_dirs_in_root, open_in_root
from supervisor.storage.tar_members import ALLOWED_XATTR_PREFIXES, PAX_XATTR_PREFIX, archive_path_parts

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Failures of the machine, not of the archive.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})


class ArchiveError(InvalidArgument):
    """The archive cannot be extracted where it was asked to go (bad member, type conflict, ...)."""


class ExtractFailed(CorralError):
    """The machine failed the extraction (disk full, I/O error)."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class ExtractOptions:
    # Docker's NoOverwriteDirNonDir: refuse to replace a directory by a non-directory or the reverse.
    no_overwrite_dir_non_dir: bool = False
    # Docker's ChownOpts (copyUIDGID): every entry owned by this (uid, gid) instead of the archive's.
    owner: tuple[int, int] | None = None
    # False keeps the extracting user's ownership (the docker CLI's NoLchown on the host side).
    chown: bool = True
    # Docker's RebaseArchiveEntries, applied to names and hardlink targets before anything else.
    rename: Callable[[str], str] | None = None
    # How the destination is named in messages (a container path, or a host path).
    label: str = "."


def extract_tar(stream: Readable, dest_fd: int, options: ExtractOptions) -> int:
    """Extract a (possibly gzip, bzip2 or xz compressed) tar under `dest_fd`; returns the member count.

    ArchiveError for a hostile or conflicting member (what came before it
    stays), ExtractFailed for a machine failure.
    """
    first = stream.read(1)
    if not first:
        return 0  # an empty body extracts nothing, as Go's tar reader sees it
    extractor = _Extractor(dest_fd, options)
    count = 0
    try:
        with tarfile.open(fileobj=cast(IO[bytes], _Prefixed(first, stream)), mode="r|*", bufsize=_CHUNK) as archive:
            for info in archive:
                data = archive.extractfile(info) if info.isreg() else None
                if extractor.apply(info, data):
                    count += 1
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise ArchiveError(f"invalid tar archive: {err}") from None
    extractor.finish()
    return count


class _Prefixed:
    """The stream with its first byte put back (sniffed for emptiness); never calls read() unbounded."""

    def __init__(self, prefix: bytes, source: Readable) -> None:
        self._prefix = prefix
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        if not self._prefix:
            return self._source.read(size) if size >= 0 else self.read_all()
        head, self._prefix = self._prefix, b""
        if size < 0:
            return head + self.read_all()
        return head + (self._source.read(size - len(head)) if size > len(head) else b"")

    def read_all(self) -> bytes:
        return b"".join(iter(lambda: self._source.read(_CHUNK), b""))


class _Extractor:
    def __init__(self, dest_fd: int, options: ExtractOptions) -> None:
        self._dest_fd = dest_fd
        self._options = options
        self._dir_mtimes: dict[tuple[str, ...], int] = {}

    def apply(self, info: tarfile.TarInfo, data: Readable | None) -> bool:
        parts = self._parts(info.name, info.name)
        if not parts:
            return False  # the extraction root itself: Docker skips it
        if info.ischr() or info.isblk():
            raise ArchiveError(f"archive member {info.name!r}: device nodes are not copied")
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk() or info.isfifo()):
            raise ArchiveError(f"archive member {info.name!r}: unsupported tar entry type {info.type!r}")
        where = posixpath.join(self._options.label, *parts)
        try:
            parent_fd = make_dirs_in_root(self._dest_fd, parts[:-1])
        except NotADirectoryError:
            raise ArchiveError(f"archive member {info.name!r}: a parent of {where!r} is not a directory") from None
        except OSError as err:
            raise self._failure(err, where) from None
        try:
            self._create(parent_fd, parts, info, data, where)
        except OSError as err:
            raise self._failure(err, where) from None
        except (OverflowError, ValueError) as err:  # an owner or time no system call takes
            raise ArchiveError(f"archive member {info.name!r}: {err}") from None
        finally:
            os.close(parent_fd)
        return True

    def finish(self) -> None:
        """Directory mtimes last: creating their entries changed them."""
        for parts, mtime_ns in self._dir_mtimes.items():
            try:
                fd = open_in_root(self._dest_fd, "/".join(parts), DIR_FLAGS, follow=False)
            except OSError:
                continue  # replaced by a later member, or by someone else meanwhile
            try:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EACCES, errno.EROFS):
                    raise self._failure(err, "/".join(parts)) from None
            finally:
                os.close(fd)

    def _parts(self, name: str, member: str) -> tuple[str, ...]:
        if self._options.rename is not None:
            name = self._options.rename(name)
        name = posixpath.normpath(name.lstrip("/") or ".")
        try:
            return archive_path_parts(name, member)
        except UnsafeLayer as err:
            raise ArchiveError(str(err).replace("layer member", "archive member", 1)) from None

    def _create(
        self, parent_fd: int, parts: tuple[str, ...], info: tarfile.TarInfo, data: Readable | None, where: str
    ) -> None:
        name = parts[-1]
        existing = _entry_mode(parent_fd, name)
        if existing is not None:
            is_dir = stat.S_ISDIR(existing)
            if self._options.no_overwrite_dir_non_dir and is_dir != info.isdir():
                raise ArchiveError(
                    f'cannot overwrite directory "{where}" with non-directory "{self._options.label}"'
                    if is_dir
                    else f'cannot overwrite non-directory "{where}" with directory "{self._options.label}"'
                )
            if not (is_dir and info.isdir()):
                if not is_dir and _is_mount_point(parent_fd, name):
                    # A file a running container has mounted on (its /etc/hosts, a file bind): as in
                    # Docker's view, what is copied there would be hidden under the mount anyway.
                    log.info("extract.mount_point_skipped", name=where)
                    return
                _refuse_mount_points(parent_fd, name, where)
                if is_dir:
                    shutil.rmtree(name, dir_fd=parent_fd)
                else:
                    os.unlink(name, dir_fd=parent_fd)
        if info.isdir():
            merging = existing is not None and stat.S_ISDIR(existing)
            if not merging:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
            try:
                self._finish_fd(fd, info, set_times=False)
            except PermissionError:
                if not merging:
                    raise
                # A directory that is a mount point (a running container's /proc, a read-only
                # volume) keeps its own owner and mode: its entries can still be extracted.
                log.debug("extract.directory_metadata_kept", name=where)
            except OSError as err:
                if not merging or err.errno != errno.EROFS:
                    raise
                log.debug("extract.directory_metadata_kept", name=where)
            self._dir_mtimes[parts] = _mtime_ns(info)
        elif info.isreg():
            assert data is not None
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent_fd)
            try:
                while chunk := data.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            except BaseException:
                os.close(fd)
                raise
            self._finish_fd(fd, info)
        elif info.issym():
            os.symlink(info.linkname, name, dir_fd=parent_fd)
            owner = self._owner(info)
            if owner is not None:
                os.chown(name, *owner, dir_fd=parent_fd, follow_symlinks=False)
            mtime = _mtime_ns(info)
            os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)
        elif info.islnk():
            self._link(parent_fd, name, info, where)
        else:
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
            # A FIFO opens without blocking for reading with O_NONBLOCK; by descriptor, never by name.
            self._finish_fd(os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=parent_fd), info)

    def _link(self, parent_fd: int, name: str, info: tarfile.TarInfo, where: str) -> None:
        target = self._parts(info.linkname, info.name)
        if not target:
            raise ArchiveError(f"archive member {info.name!r}: hardlink to the extraction root")
        try:
            source_fd = open_in_root(self._dest_fd, "/".join(target[:-1]), DIR_FLAGS)
        except FileNotFoundError:
            raise ArchiveError(f"archive member {info.name!r}: hardlink target {info.linkname!r} not found") from None
        try:
            mode = _entry_mode(source_fd, target[-1])
            if mode is None:
                raise ArchiveError(f"archive member {info.name!r}: hardlink target {info.linkname!r} not found")
            if stat.S_ISDIR(mode):
                raise ArchiveError(f"archive member {info.name!r}: hardlink to a directory")
            os.link(target[-1], name, src_dir_fd=source_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(source_fd)

    def _finish_fd(self, fd: int, info: tarfile.TarInfo, *, set_times: bool = True) -> None:
        """Owner, mode, xattrs and times on an entry we created, through its descriptor; closes it."""
        try:
            owner = self._owner(info)
            # chown first: it clears setuid/setgid and file capabilities.
            if owner is not None:
                os.fchown(fd, *owner)
            os.fchmod(fd, info.mode & 0o7777)
            for key, value in info.pax_headers.items():
                if not key.startswith(PAX_XATTR_PREFIX):
                    continue
                xattr = key[len(PAX_XATTR_PREFIX) :]
                if xattr.startswith(ALLOWED_XATTR_PREFIXES):
                    try:
                        os.setxattr(fd, xattr, value.encode("utf-8", "surrogateescape"))
                    except OSError as err:
                        if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                            raise
            if set_times:
                mtime = _mtime_ns(info)
                os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _owner(self, info: tarfile.TarInfo) -> tuple[int, int] | None:
        if self._options.owner is not None:
            return self._options.owner
        return (info.uid, info.gid) if self._options.chown else None

    def _failure(self, err: OSError, where: str) -> CorralError:
        message = f"{where}: {err.strerror or err}"
        if err.errno in _HOST_ERRNOS:
            return ExtractFailed(message)
        return ArchiveError(message)


def _is_mount_point(parent_fd: int, name: str) -> bool:
    return os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_dev != os.fstat(parent_fd).st_dev


def _refuse_mount_points(parent_fd: int, name: str, where: str) -> None:
    """ArchiveError if replacing `name` would remove a mount point or anything below one.

    From outside a container's mount namespace the kernel lets an unlink
    take a mounted-on file away (its mount goes with it), and a recursive
    removal would empty a volume through its mount point. A mount shows as
    a change of st_dev (the container's tree is one overlay).
    """
    device = os.fstat(parent_fd).st_dev
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    mounted = st.st_dev != device
    if not mounted and stat.S_ISDIR(st.st_mode):
        for _root, _dirs, files, root_fd in os.fwalk(name, dir_fd=parent_fd):
            if os.fstat(root_fd).st_dev != device or any(
                os.stat(f, dir_fd=root_fd, follow_symlinks=False).st_dev != device for f in files
            ):
                mounted = True
                break
    if mounted:
        raise ArchiveError(f"{where}: a mount point (or a directory holding one) cannot be replaced")


def _entry_mode(parent_fd: int, name: str) -> int | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None


def _mtime_ns(info: tarfile.TarInfo) -> int:
    return round(info.mtime * 1_000_000_000)

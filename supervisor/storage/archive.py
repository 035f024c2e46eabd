"""Tar streams of a tree, as Docker's archiver builds them (docker cp, export), and path stats.

Everything starts from a root descriptor (a container's `/` or the host's)
and is resolved inside it (storage/inroot.py); the walk then goes down by
descriptors only, opening each entry with O_NOFOLLOW under its parent, so
a container that swaps a directory for a symlink mid-walk gets the symlink
archived, never followed. Only regular files are ever opened for reading
(O_NONBLOCK, type re-checked on the descriptor), so a FIFO or device node
cannot stall or leak anything.

Names follow moby's TarWithOptions with IncludeFiles=[base],
IncludeSourceDir and RebaseNames={base: rebase}: the entry itself, then
its contents pre-order in byte order, directories with a trailing `/`,
hardlinked files as links to the first name seen, sockets skipped, mtimes
in whole seconds, security.capability as a PAX xattr.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import structlog

from supervisor.storage.inroot import DIR_FLAGS, PATH_FLAGS, base_name, open_in_root, resolve_in_scope

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_FLUSH = 256 << 10
_BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * _BLOCK)
MAX_DEPTH = 1000
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CAPABILITY_XATTR = "security.capability"

# Go's os.FileMode type bits, as the X-Docker-Container-Path-Stat header carries them.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

# Kernel filesystems (proc, sysfs, cgroup, cgroup2, devpts, mqueue, debugfs, tracefs, securityfs,
# bpf, configfs, fusectl, pstore, binfmt_misc, selinuxfs, nsfs): a walk records their mount point
# and never goes in. Together with the runtime's own mounts below, a live container's tree looks
# as Docker's cp sees it (image, changes, volumes), not like its /proc.
PSEUDO_FILESYSTEMS = frozenset(
    {
        0x9FA0, 0x62656572, 0x27E0EB, 0x63677270, 0x1CD1, 0x19800202, 0x64626720, 0x74726163,
        0x73636673, 0xCAFE4A11, 0x62656570, 0x65735546, 0x6165676C, 0x42494E4D, 0xF97CFF8C, 0x6E736673,
    }
)  # fmt: skip
RUNTIME_MOUNTS = frozenset({"/dev", "/proc", "/sys"})

_libc = ctypes.CDLL(None, use_errno=True)


def go_file_mode(st_mode: int) -> int:
    """Go's os.FileMode for a stat mode: permission bits plus Go's own type and special bits."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: GO_MODE_DIR,
        stat.S_IFLNK: GO_MODE_SYMLINK,
        stat.S_IFBLK: GO_MODE_DEVICE,
        stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        stat.S_IFIFO: GO_MODE_NAMED_PIPE,
        stat.S_IFSOCK: GO_MODE_SOCKET,
    }.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def go_time(ns: int) -> str:
    """Go's time.Time JSON (RFC 3339, nanoseconds without trailing zeros), in UTC."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class PathStat:
    """Docker's ContainerPathStat: what `HEAD /containers/{id}/archive` reports about a path."""

    name: str
    size: int
    mode: int  # Go's os.FileMode
    mtime: str
    link_target: str

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & GO_MODE_DIR)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }

    def header_value(self) -> str:
        """The X-Docker-Container-Path-Stat header: base64 of the JSON."""
        return base64.b64encode(json.dumps(self.to_json(), separators=(",", ":")).encode()).decode()

    @classmethod
    def from_header(cls, value: str) -> PathStat:
        data = json.loads(base64.b64decode(value))
        return cls(data["name"], data["size"], data["mode"], data["mtime"], data.get("linkTarget", ""))


def stat_path(root_fd: int, path: str) -> PathStat:
    """lstat of a cleaned, absolute `path` inside the root (a trailing `/` or `/.` follows the last
    link); a symlink's target is fully resolved inside the root. OSError if it is not there."""
    fd = open_in_root(root_fd, path, PATH_FLAGS, follow=False)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    target = resolve_in_scope(root_fd, path) if stat.S_ISLNK(st.st_mode) else ""
    return PathStat(base_name(path), st.st_size, go_file_mode(st.st_mode), go_time(st.st_mtime_ns), target)


TarChunks = Generator[bytes, None, None]


def tar_path(root_fd: int, path: str, *, is_dir: bool, live: bool = False) -> TarChunks:
    """`GET /containers/{id}/archive`: a directory as itself and its contents, anything else as one
    entry, the first name component being the path's base name (the root: `/`)."""
    if is_dir:
        return tar_stream(root_fd, path, ".", rebase=base_name(path), live=live)
    directory, base = posixpath.split(path)
    return tar_stream(root_fd, directory or "/", base, rebase=base_name(path), live=live)


def tar_tree(root_fd: int) -> TarChunks:
    """`export`: everything under the root, names relative to it, the root itself not included."""
    return tar_stream(root_fd, "/", ".", contents_only=True)


def tar_stream(
    root_fd: int,
    directory: str,
    base: str,
    *,
    rebase: str | None = None,
    contents_only: bool = False,
    live: bool = False,
) -> TarChunks:
    """The tar of `base` (an entry of `directory`, or "." for the directory itself) in chunks.

    `rebase` replaces `base` at the start of every name ("/" drops it, as
    Docker does for the root). `contents_only` leaves the entry itself out
    and names its contents without a "./" prefix. `live` stops at the
    kernel filesystems and runtime mounts of a running container.
    """
    dir_fd = open_in_root(root_fd, directory, DIR_FLAGS)
    try:
        walker = _Walker(base, rebase, posixpath.normpath(posixpath.join("/", directory, base)), live)
        yield from walker.run(dir_fd, contents_only)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class _Frame:
    fd: int
    names: Iterator[str]
    rel: str
    container_path: str
    dev: int
    depth: int


class _Walker:
    def __init__(self, base: str, rebase: str | None, container_path: str, live: bool) -> None:
        self._base = base
        self._replacement = None if rebase is None or rebase == base else ("" if rebase == "/" else rebase)
        self._container_path = container_path
        self._live = live
        self._buffer = bytearray()
        self._seen: dict[tuple[int, int], str] = {}

    def run(self, dir_fd: int, contents_only: bool) -> Iterator[bytes]:
        stack: list[_Frame] = []
        try:
            st = os.stat(self._base, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                yield from self._entry(dir_fd, self._base, self._base, st)
            else:
                fd = os.open(self._base, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                if not contents_only:
                    self._header(self._name(self._base, True), os.fstat(fd), tarfile.DIRTYPE, xattr_fd=fd)
                if self._live and (
                    self._container_path in RUNTIME_MOUNTS or _filesystem_type(fd) in PSEUDO_FILESYSTEMS
                ):
                    os.close(fd)  # asked for /proc itself (or the like): an empty directory, as in Docker's view
                else:
                    prefix = "" if contents_only else self._base
                    stack.append(_Frame(fd, iter(sorted(os.listdir(fd))), prefix, self._container_path, st.st_dev, 0))
            while stack:
                frame = stack[-1]
                name = next(frame.names, None)
                if name is None:
                    os.close(stack.pop().fd)
                    continue
                rel = f"{frame.rel}/{name}" if frame.rel else name
                try:
                    st = os.stat(name, dir_fd=frame.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone since the listing
                if stat.S_ISDIR(st.st_mode):
                    child = self._directory(frame, name, rel)
                    if child is not None:
                        stack.append(child)
                else:
                    yield from self._entry(frame.fd, name, rel, st)
                if len(self._buffer) >= _FLUSH:
                    yield self._take()
            self._buffer += END_OF_ARCHIVE
            yield self._take()
        finally:
            for frame in stack:
                os.close(frame.fd)

    def _directory(self, frame: _Frame, name: str, rel: str) -> _Frame | None:
        """Archive the directory `name` of `frame`'s; the frame to descend into, if it is to be walked."""
        try:
            fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=frame.fd)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None  # replaced since the stat; not followed
            raise
        try:
            st = os.fstat(fd)
            self._header(self._name(rel, True), st, tarfile.DIRTYPE, xattr_fd=fd)
            container_path = f"{frame.container_path.rstrip('/')}/{name}"
            if not self._descend(fd, st, frame, container_path):
                os.close(fd)
                return None
            return _Frame(fd, iter(sorted(os.listdir(fd))), rel, container_path, st.st_dev, frame.depth + 1)
        except BaseException:
            os.close(fd)
            raise

    def _descend(self, fd: int, st: os.stat_result, parent: _Frame, container_path: str) -> bool:
        if parent.depth + 1 >= MAX_DEPTH:
            raise OSError(errno.ELOOP, f"directory tree deeper than {MAX_DEPTH} levels", container_path)
        if not self._live or st.st_dev == parent.dev:
            return True
        # A mount point inside a running container.
        return not _kernel_dir(fd, container_path)

    def _entry(self, dir_fd: int, name: str, rel: str, st: os.stat_result) -> Iterator[bytes]:
        """A non-directory entry: header, then a regular file's content."""
        mode = st.st_mode
        tar_name = self._name(rel, False)
        if stat.S_ISSOCK(mode):
            log.debug("archive.socket_skipped", name=tar_name)
            return
        if st.st_nlink > 1:
            first = self._seen.get((st.st_dev, st.st_ino))
            if first is not None:
                self._header(tar_name, st, tarfile.LNKTYPE, linkname=first)
                return
            self._seen[(st.st_dev, st.st_ino)] = tar_name
        if stat.S_ISLNK(mode):
            self._header(tar_name, st, tarfile.SYMTYPE, linkname=os.readlink(name, dir_fd=dir_fd))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            kinds = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}
            self._header(tar_name, st, kinds[stat.S_IFMT(mode)])
        elif stat.S_ISREG(mode):
            yield from self._file(dir_fd, name, tar_name)

    def _file(self, dir_fd: int, name: str, tar_name: str) -> Iterator[bytes]:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP):
                return  # replaced since the stat
            if err.errno in (errno.EACCES, errno.EPERM, errno.ENXIO, errno.ENODEV):
                # As moby's archiver: an unreadable file is logged and left out, not fatal.
                log.warning("archive.file_skipped", name=tar_name, error=err.strerror)
                return
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            self._header(tar_name, st, tarfile.REGTYPE, xattr_fd=fd)
            left = st.st_size
            if left:
                yield self._take()
            while left > 0:
                chunk = os.read(fd, min(_CHUNK, left))
                if not chunk:
                    break  # shrank while we read: pad, as the header promised the size
                left -= len(chunk)
                yield chunk
            self._buffer += b"\0" * (left + (-st.st_size % _BLOCK))
        finally:
            os.close(fd)

    def _name(self, rel: str, is_dir: bool) -> str:
        if self._replacement is not None:
            rel = self._replacement + rel[len(self._base) :]
        return rel + "/" if is_dir and not rel.endswith("/") else rel

    def _header(self, name: str, st: os.stat_result, kind: bytes, *, linkname: str = "", xattr_fd: int = -1) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = st.st_mode & 0o7777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        info.size = st.st_size if kind == tarfile.REGTYPE else 0
        info.linkname = linkname
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if xattr_fd >= 0:
            capability = _capability(xattr_fd)
            if capability is not None:
                info.pax_headers = {f"SCHILY.xattr.{_CAPABILITY_XATTR}": capability.decode("utf-8", "surrogateescape")}
        self._buffer += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def _take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _capability(fd: int) -> bytes | None:
    try:
        return os.getxattr(fd, _CAPABILITY_XATTR)
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise


def _kernel_dir(fd: int, container_path: str) -> bool:
    return container_path in RUNTIME_MOUNTS or _filesystem_type(fd) in PSEUDO_FILESYSTEMS


class _StatFs(ctypes.Structure):
    # f_type leads struct statfs on every architecture; the rest is room for the kernel to fill.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def _filesystem_type(fd: int) -> int:
    buf = _StatFs()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(buf.f_type) & 0xFFFFFFFF

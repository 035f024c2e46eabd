"""Paths inside a directory treated as `/`: resolution that never leaves it, as chroot would.

A container's tree (reached through `/proc/PID/root` or a detached overlay
mount) is full of paths its owner controls: `/x -> /`, `etc -> ../../..`,
symlinked parents. Every lookup here goes through openat2 with
RESOLVE_IN_ROOT, so the kernel resolves `..`, absolute symlinks and
symlink chains as if the given directory fd were the root, and
RESOLVE_NO_MAGICLINKS, so `/proc/self/...` links inside a container cannot
jump anywhere. Nothing here ever builds a host path from a container path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import stat
from collections import deque

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# openat2 has the same number on every architecture (the unified syscall table).
_SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
# The kernel answers EAGAIN when a rename raced a `..` step; a retry resolves again.
_RETRIES = 32
# Linux follows at most 40 links per lookup; Go's FollowSymlinkInScope stops at 255.
MAX_LINKS = 255

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    encoded = os.fsencode(path)
    for _ in range(_RETRIES):
        fd = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "path kept changing during the lookup", path)


def open_in_root(root_fd: int, path: str, flags: int, *, follow: bool = True) -> int:
    """Open `path` (absolute or not, it is taken from the root) inside `root_fd`'s tree.

    `follow=False` opens a final symlink itself (O_NOFOLLOW with O_PATH);
    a trailing `/` or `/.` still resolves through it, as for lstat(2).
    """
    relative = path.lstrip("/") or "."
    if not follow:
        flags |= os.O_NOFOLLOW
    return openat2(root_fd, relative, flags, _IN_ROOT)


def lstat_in_root(root_fd: int, path: str) -> os.stat_result:
    fd = open_in_root(root_fd, path, PATH_FLAGS, follow=False)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def clean_path(path: str) -> str:
    """Docker's PreserveTrailingDotOrSeparator(filepath.Join("/", path), path): lexically cleaned
    and absolute, keeping a trailing `/` or `/.`, which ask for a directory."""
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if posixpath.basename(path) == "." and posixpath.basename(cleaned) != ".":
        cleaned = cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def base_name(path: str) -> str:
    """Go's filepath.Base: trailing slashes dropped, "/" for the root, "." for nothing."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def split_dir_entry(path: str) -> tuple[str, str]:
    """Docker's SplitPathDirEntry: (dir, base) of the cleaned path, keeping a final `.`."""
    cleaned = posixpath.normpath(path) if path else "."
    if base_name(path) == ".":
        cleaned = posixpath.join(cleaned, ".")
    return posixpath.dirname(cleaned) or ".", base_name(cleaned)


def resolve_in_scope(root_fd: int, path: str) -> str:
    """Every symlink on `path` followed inside the root, as far as the path exists (Go's
    FollowSymlinkInScope): the container-absolute path the kernel would reach under chroot."""
    pending = deque(part for part in path.split("/") if part not in ("", "."))
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        try:
            fd = open_in_root(root_fd, candidate, PATH_FLAGS, follow=False)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                resolved.append(part)
                continue
            target = os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            resolved = []
        pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return "/" + "/".join(resolved)


def make_dirs_in_root(root_fd: int, parts: tuple[str, ...], mode: int = 0o755) -> int:
    """A read fd for the directory `parts` under the root, creating what is missing.

    Existing symlinks on the way are followed inside the root (so `a -> /b`
    then `a/c` creates `/b/c` of this root), never outside it. Returns a
    fresh fd (O_DIRECTORY); the caller closes it.
    """
    wanted = "/".join(parts)
    try:
        return open_in_root(root_fd, wanted, DIR_FLAGS)
    except FileNotFoundError:
        pass
    resolved = resolve_in_scope(root_fd, wanted).strip("/")
    components = [p for p in resolved.split("/") if p]
    fd = open_in_root(root_fd, ".", DIR_FLAGS)
    try:
        for index, name in enumerate(components):
            try:
                next_fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                created = True
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    created = False  # made meanwhile; resolve it afresh below
                next_fd = open_in_root(root_fd, "/".join(components[: index + 1]), DIR_FLAGS)
                if created:
                    os.fchmod(next_fd, mode)  # never chmod by name: it could be a symlink by now
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                # Raced into a symlink or a non-directory: resolve it again, inside the root.
                next_fd = open_in_root(root_fd, "/".join(components[: index + 1]), DIR_FLAGS)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd

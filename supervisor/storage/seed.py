"""Seeding a new volume from an image: what the image has at the mount path, copied in first.

Docker copies the container's view of the mount path into an empty volume
when the container is created. The container's upper dir is still empty
then, so that view is the image's: this module reads it straight from the
unpacked layer dirs, merging them as overlayfs would (the top-most entry
wins, a 0/0 character device whites out what is below, a directory with
`trusted.overlay.opaque` hides the directories below it). No mount is made,
so nothing can leak into the host's mount table.

Paths are resolved inside the image: a symlink (absolute or with `..`)
is followed within the image's root, never the host's, and the layer
dirs are only entered through real directories (lstat at every step).
The copy writes into the volume only through directory descriptors opened
with O_NOFOLLOW and creates every entry with O_EXCL, so even a container
already writing to the volume cannot redirect it. Modes, owners, times,
xattrs (but overlay's own), symlinks, device nodes, fifos and hardlinks
are kept, as Docker's copy keeps them.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from supervisor.errors import InvalidArgument

log = structlog.get_logger(__name__)

OPAQUE_XATTR = "trusted.overlay.opaque"
_SKIPPED_XATTR_PREFIX = "trusted.overlay."
_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Hardlinked inodes remembered (one O_PATH descriptor each); past this, further copies are plain.
_MAX_LINK_FDS = 256
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One name in the merged tree: the top-most layer's copy, and for a directory every layer's."""

    path: Path
    info: os.stat_result
    # Directories only: the dirs merged into this one, top-most first.
    stack: tuple[Path, ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.info.st_mode)


@dataclass(frozen=True)
class Resolved:
    entry: Entry
    path: str  # where the path led inside the image, symlinks followed
    is_root: bool


class LayerView:
    """The image's tree as overlay shows it, read from its unpacked layer dirs (bottom-most first)."""

    def __init__(self, layers: Sequence[Path]) -> None:
        stack: list[Path] = []
        for layer in reversed(layers):
            stack.append(layer)
            if _opaque(layer):
                break
        if not stack:
            raise ValueError("an image needs at least one layer")
        self.root = Entry(stack[0], os.lstat(stack[0]), tuple(stack))

    def lookup(self, parent: Entry, name: str) -> Entry | None:
        for index, directory in enumerate(parent.stack):
            path = directory / name
            info = _lstat(path)
            if info is None:
                continue
            if _is_whiteout(info):
                return None
            if not stat.S_ISDIR(info.st_mode):
                return Entry(path, info)
            stack = [path]
            if not _opaque(path):
                for lower in parent.stack[index + 1 :]:
                    below = _lstat(lower / name)
                    if below is None:
                        continue
                    if not stat.S_ISDIR(below.st_mode):
                        break  # a file or whiteout below hides everything under it
                    stack.append(lower / name)
                    if _opaque(lower / name):
                        break
            return Entry(path, info, tuple(stack))
        return None

    def children(self, directory: Entry) -> Iterator[tuple[str, Entry]]:
        names: set[str] = set()
        for layer_dir in directory.stack:
            names.update(os.listdir(layer_dir))
        for name in sorted(names):
            entry = self.lookup(directory, name)
            if entry is not None:
                yield name, entry

    def resolve(self, path: str) -> Resolved | None:
        """Follow `path` from the image's root, symlinks resolved inside the image; None if missing."""
        pending = [part for part in path.split("/") if part not in ("", ".")]
        trail: list[tuple[str, Entry]] = [("", self.root)]
        links = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if len(trail) > 1:
                    trail.pop()
                continue
            parent = trail[-1][1]
            if not parent.is_dir:
                return None
            entry = self.lookup(parent, part)
            if entry is None:
                return None
            if stat.S_ISLNK(entry.info.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise InvalidArgument(f"{path}: too many levels of symbolic links in the image")
                target = os.readlink(entry.path)
                if target.startswith("/"):
                    trail = trail[:1]
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            trail.append((part, entry))
        return Resolved(trail[-1][1], "/" + "/".join(name for name, _ in trail[1:]), len(trail) == 1)


def image_path(layers: Sequence[Path], path: str) -> Resolved | None:
    """What the image has at `path` (symlinks followed inside it), or None."""
    return LayerView(layers).resolve(path)


def seed_volume(layers: Sequence[Path], target: str, volume_dir: Path) -> bool:
    """Copy the image's content at `target` into `volume_dir` if that is empty (Docker's copy-up).

    True if something was copied. Nothing happens when the volume has
    entries, or when the image has no directory at `target`. A target
    that leads to the image's root is refused: mounting there would hide
    the whole filesystem.
    """
    dest_fd = os.open(volume_dir, _DIR_FLAGS)
    try:
        if os.listdir(dest_fd):
            return False
        view = LayerView(layers)
        resolved = view.resolve(target)
        if resolved is None or not resolved.entry.is_dir:
            return False
        if resolved.is_root:
            raise InvalidArgument(f"invalid mount destination {target}: it leads to / in the image")
        copier = _Copier(view)
        try:
            copier.copy_dir(resolved.entry, dest_fd)
        except BaseException:
            _empty(dest_fd)
            raise
        finally:
            copier.close()
        log.info("volume.seeded", target=target, resolved=resolved.path, volume=str(volume_dir), files=copier.count)
        return True
    finally:
        os.close(dest_fd)


class _Copier:
    def __init__(self, view: LayerView) -> None:
        self._view = view
        self._links: dict[tuple[int, int], int] = {}
        self.count = 0

    def close(self) -> None:
        for fd in self._links.values():
            os.close(fd)
        self._links.clear()

    def copy_dir(self, directory: Entry, dest_fd: int) -> None:
        """Fill `dest_fd` with the merged children of `directory`, then give it `directory`'s attributes."""
        for name, entry in self._view.children(directory):
            self._copy_entry(name, entry, dest_fd)
        _set_attributes(dest_fd, directory)

    def _copy_entry(self, name: str, entry: Entry, parent_fd: int) -> None:
        mode = entry.info.st_mode
        self.count += 1
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                self.copy_dir(entry, fd)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self._copy_file(name, entry, parent_fd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), name, dir_fd=parent_fd)
            os.chown(name, entry.info.st_uid, entry.info.st_gid, dir_fd=parent_fd, follow_symlinks=False)
            times = (entry.info.st_atime_ns, entry.info.st_mtime_ns)
            os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, entry.info.st_rdev, dir_fd=parent_fd)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                # chown and chmod through the O_PATH descriptor's /proc link: never a name that could move.
                proc = f"/proc/self/fd/{fd}"
                os.chown(proc, entry.info.st_uid, entry.info.st_gid)
                os.chmod(proc, stat.S_IMODE(mode))
                os.utime(proc, ns=(entry.info.st_atime_ns, entry.info.st_mtime_ns))
            finally:
                os.close(fd)
        # Sockets are not content: skipped, as a copy of an image would skip them.

    def _copy_file(self, name: str, entry: Entry, parent_fd: int) -> None:
        key = (entry.info.st_dev, entry.info.st_ino)
        first = self._links.get(key)
        if first is not None:
            os.link(f"/proc/self/fd/{first}", name, dst_dir_fd=parent_fd, follow_symlinks=True)
            return
        src = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            dst = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
            try:
                _copy_data(src, dst)
                _set_attributes(dst, entry)
                if entry.info.st_nlink > 1 and len(self._links) < _MAX_LINK_FDS:
                    self._links[key] = os.open(f"/proc/self/fd/{dst}", os.O_PATH | os.O_CLOEXEC)
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _copy_data(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, _CHUNK):
            pass
        return
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(dst, 0, os.SEEK_SET)
    os.ftruncate(dst, 0)
    while chunk := os.read(src, _CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


def _set_attributes(fd: int, entry: Entry) -> None:
    # chown first: it clears setuid/setgid bits and file capabilities set before it.
    os.fchown(fd, entry.info.st_uid, entry.info.st_gid)
    os.fchmod(fd, stat.S_IMODE(entry.info.st_mode))
    for name in os.listxattr(entry.path, follow_symlinks=False):
        if name.startswith(_SKIPPED_XATTR_PREFIX):
            continue
        try:
            os.setxattr(fd, name, os.getxattr(entry.path, name, follow_symlinks=False))
        except OSError as err:
            # Docker ignores xattrs the volume's filesystem does not support.
            if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
    os.utime(fd, ns=(entry.info.st_atime_ns, entry.info.st_mtime_ns))


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _empty(dir_fd: int) -> None:
    """Undo a failed copy: the volume was empty before it."""
    for name in os.listdir(dir_fd):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)

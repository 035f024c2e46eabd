"""A container's changeset: what its upper dir adds, changes and deletes relative to its image.

Two views are compared. The *old* view is the image (plus the container's
init layer): its lower dirs merged as overlayfs merges them — the top-most
entry of a name wins, a 0/0 character device (whiteout) hides the name in
the layers below, an opaque directory hides everything below it. The *new*
view adds the upper dir on top. The upper dir is the only place anything
changed, so only its entries, and the old children of its opaque
directories, are examined.

The result follows Docker's `docker diff` (its naive diff, which is what
`GET /containers/{id}/changes` answers with): an entry in both views is
"changed" only if its metadata differ (type and mode, owner, device, and
for non-directories size, mtime, symlink target, exported xattrs), so a
copy-up that changed nothing is not reported; every directory with a
change below it is reported as changed; a deleted directory is one
deletion, not one per entry it held.

The upper dir belongs to a container that may still run, so it is walked
through directory descriptors opened with O_NOFOLLOW, one name at a time:
a symlink planted in it is read as a symlink, never followed to the host.
Lower dirs are unpacked layers that nothing modifies and are read by path.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import CorralError

OPAQUE_XATTR = "trusted.overlay.opaque"
# Set by overlayfs only when mounted with redirect_dir=on / metacopy=on (corral does not ask for
# either, and the kernel defaults here are off); an upper dir using them cannot be read alone.
REDIRECT_XATTR = "trusted.overlay.redirect"
METACOPY_XATTR = "trusted.overlay.metacopy"
# The xattrs a layer may carry (as storage/tar_members.py accepts them when unpacking).
EXPORTED_XATTR_PREFIXES = ("user.", "security.capability")
# Each level of the upper walk holds one directory descriptor.
MAX_DEPTH = 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]
Xattrs = tuple[tuple[str, bytes], ...]


class ChangeKind(enum.IntEnum):
    """Docker's numbering: `Kind` in the changes JSON."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2

    @property
    def letter(self) -> str:
        return "CAD"[self]


@dataclass(frozen=True)
class Change:
    path: str  # absolute: "/etc/passwd"
    kind: ChangeKind

    def __str__(self) -> str:
        return f"{self.kind.letter} {self.path}"


class UnsupportedSnapshot(CorralError):
    """The upper dir uses overlay features a diff cannot read from it alone (redirect_dir, metacopy)."""


@dataclass(frozen=True)
class Meta:
    """What decides whether an entry present before and after has changed."""

    mode: int  # st_mode, file type included
    uid: int
    gid: int
    rdev: int
    size: int
    mtime_ns: int
    link_target: str | None
    xattrs: Xattrs

    def differs(self, other: Meta) -> bool:
        if (self.mode, self.uid, self.gid, self.rdev, self.xattrs) != (
            other.mode,
            other.uid,
            other.gid,
            other.rdev,
            other.xattrs,
        ):
            return True
        if stat.S_ISDIR(self.mode):
            return False  # a directory's size and mtime change with its entries, which are compared one by one
        return (
            self.size != other.size
            or not _same_time(self.mtime_ns, other.mtime_ns)
            or self.link_target != other.link_target
        )


def _same_time(a: int, b: int) -> bool:
    """Equal, or the same second with one side truncated to whole seconds (tar keeps no more)."""
    if a == b:
        return True
    (sa, na), (sb, nb) = divmod(a, 1_000_000_000), divmod(b, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def exported_xattrs(path: str | int) -> Xattrs:
    """The xattrs a layer keeps, of `path` itself (never a symlink's target) or of an open descriptor."""
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    found = []
    for name in sorted(names):
        if name.startswith(EXPORTED_XATTR_PREFIXES):
            try:
                found.append((name, os.getxattr(path, name, follow_symlinks=follow)))
            except OSError as err:
                if err.errno not in (errno.ENODATA, errno.ENOTSUP):
                    raise
    return tuple(found)


def _meta(st: os.stat_result, link_target: str | None, xattrs: Xattrs) -> Meta:
    return Meta(st.st_mode, st.st_uid, st.st_gid, st.st_rdev, st.st_size, st.st_mtime_ns, link_target, xattrs)


# -- the image's view -----------------------------------------------------


@dataclass(frozen=True)
class LowerEntry:
    path: Path  # in the top-most layer that has it
    stat: os.stat_result
    # For a directory: the layers whose copies of it merge, top-most first.
    layers: tuple[Path, ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)

    def meta(self) -> Meta:
        target = os.readlink(self.path) if stat.S_ISLNK(self.stat.st_mode) else None
        return _meta(self.stat, target, exported_xattrs(str(self.path)))


class LowerView:
    """The merged tree of read-only lower dirs, looked up the way overlayfs looks names up.

    `lowers` bottom-most first, as `ImageStore.layer_dirs` gives them.
    Lookups are cached: a view is meant for one diff or one commit.
    """

    def __init__(self, lowers: Sequence[Path]) -> None:
        top_first = tuple(reversed(lowers))
        self._cache: dict[Parts, LowerEntry | None] = {}
        if top_first:
            self._cache[()] = LowerEntry(top_first[0], os.lstat(top_first[0]), top_first)
        else:
            self._cache[()] = None

    def lookup(self, parts: Parts) -> LowerEntry | None:
        if parts in self._cache:
            return self._cache[parts]
        parent = self.lookup(parts[:-1])
        entry = None if parent is None or not parent.is_dir else _lookup_in(parent.layers, parts)
        self._cache[parts] = entry
        return entry

    def children(self, parts: Parts) -> list[str]:
        """The names in the directory `parts` (sorted); [] if it is not a directory."""
        entry = self.lookup(parts)
        if entry is None or not entry.is_dir:
            return []
        seen: set[str] = set()
        for layer in entry.layers:
            with os.scandir(layer.joinpath(*parts)) as listing:
                seen.update(item.name for item in listing)
        return sorted(name for name in seen if self.lookup((*parts, name)) is not None)


def _lookup_in(layers: tuple[Path, ...], parts: Parts) -> LowerEntry | None:
    found: LowerEntry | None = None
    dir_layers: list[Path] = []
    for layer in layers:
        path = layer.joinpath(*parts)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if is_whiteout(st):
            break
        if not stat.S_ISDIR(st.st_mode):
            if found is None:
                found = LowerEntry(path, st)
            break  # a non-directory ends the merge, whatever lies below it
        if found is None:
            found = LowerEntry(path, st)
        dir_layers.append(layer)
        if _xattr(str(path), OPAQUE_XATTR) == b"y":
            break
    if found is not None and found.is_dir:
        return LowerEntry(found.path, found.stat, tuple(dir_layers))
    return found


def _xattr(path: str | int, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False) if isinstance(path, str) else os.getxattr(path, name)
    except OSError as err:
        if err.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


# -- the upper dir --------------------------------------------------------


@dataclass(frozen=True)
class UpperEntry:
    """One entry of the upper dir, in walk order (pre-order, names sorted)."""

    parts: Parts
    stat: os.stat_result
    # The descriptor of the directory holding the entry: valid only until the walk moves on.
    parent_fd: int
    whiteout: bool = False
    opaque: bool = False  # a directory marked trusted.overlay.opaque=y
    link_target: str | None = None
    xattrs: Xattrs = ()
    children: tuple[str, ...] = ()  # a directory's names, sorted

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)

    def meta(self) -> Meta:
        return _meta(self.stat, self.link_target, self.xattrs)


def walk_upper(upper: Path) -> Iterator[UpperEntry]:
    """Every entry below `upper` (not `upper` itself), parents before children, never following a symlink."""
    root_fd = os.open(upper, _DIR_FLAGS)
    # (fd, parts, names still to visit, reversed) for each directory on the way down.
    stack: list[tuple[int, Parts, list[str]]] = [(root_fd, (), sorted(_names(root_fd), reverse=True))]
    try:
        while stack:
            fd, parts, pending = stack[-1]
            if not pending:
                os.close(fd)
                stack.pop()
                continue
            name = pending.pop()
            entry, child_fd = _upper_entry(fd, (*parts, name))
            if entry is None:
                continue
            if child_fd is None:
                yield entry
                continue
            if len(stack) >= MAX_DEPTH:
                os.close(child_fd)
                raise UnsupportedSnapshot(
                    f"{entry.path}: the container's filesystem nests deeper than {MAX_DEPTH} levels"
                )
            stack.append((child_fd, entry.parts, list(reversed(entry.children))))
            yield entry
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _names(fd: int) -> list[str]:
    with os.scandir(fd) as listing:
        return [item.name for item in listing]


def _upper_entry(parent_fd: int, parts: Parts) -> tuple[UpperEntry | None, int | None]:
    """The entry `parts[-1]` of `parent_fd`, and for a directory an open descriptor of it."""
    name = parts[-1]
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None, None  # removed by the running container since the listing
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None, None  # replaced meanwhile; the diff is of a moving target anyway
            raise
        try:
            st = os.fstat(fd)
            _refuse_overlay_features(fd, "/" + "/".join(parts))
            entry = UpperEntry(
                parts,
                st,
                parent_fd,
                opaque=_xattr(fd, OPAQUE_XATTR) == b"y",
                xattrs=exported_xattrs(fd),
                children=tuple(sorted(_names(fd))),
            )
        except BaseException:
            os.close(fd)
            raise
        return entry, fd
    if is_whiteout(st):
        return UpperEntry(parts, st, parent_fd, whiteout=True), None
    # /proc/self/fd/N is the directory itself; the last component is not followed.
    by_fd = f"/proc/self/fd/{parent_fd}/{name}"
    try:
        if stat.S_ISREG(st.st_mode):
            _refuse_overlay_features(by_fd, "/" + "/".join(parts))
        target = os.readlink(name, dir_fd=parent_fd) if stat.S_ISLNK(st.st_mode) else None
        xattrs = exported_xattrs(by_fd)
    except FileNotFoundError:
        return None, None
    return UpperEntry(parts, st, parent_fd, link_target=target, xattrs=xattrs), None


def _refuse_overlay_features(path: str | int, shown: str) -> None:
    for name, option in ((REDIRECT_XATTR, "redirect_dir"), (METACOPY_XATTR, "metacopy")):
        if _xattr(path, name) is not None:
            raise UnsupportedSnapshot(
                f"{shown}: the overlay was mounted with {option}=on ({name} is set); "
                "corral cannot diff or commit such an upper dir"
            )


# -- the changeset --------------------------------------------------------


def container_changes(upper: Path, lowers: Sequence[Path]) -> list[Change]:
    """The changes the upper dir makes to the image in `lowers` (bottom-most first), sorted by path."""
    view = LowerView(lowers)
    found: dict[str, ChangeKind] = {}
    # Directories whose lower content the new view hides (opaque, or below an opaque one).
    hiding: list[Parts] = []
    for entry in walk_upper(upper):
        while hiding and hiding[-1] != entry.parts[: len(hiding[-1])]:
            hiding.pop()
        old = view.lookup(entry.parts)
        if entry.whiteout:
            if old is not None:
                found[entry.path] = ChangeKind.DELETED
            continue
        if old is None:
            found[entry.path] = ChangeKind.ADDED
        elif entry.meta().differs(old.meta()):
            found[entry.path] = ChangeKind.MODIFIED
        if not stat.S_ISDIR(entry.stat.st_mode):
            continue
        if entry.opaque or hiding:
            hiding.append(entry.parts)
            if old is not None and old.is_dir:
                present = set(entry.children)
                for name in view.children(entry.parts):
                    if name not in present:
                        found["/" + "/".join((*entry.parts, name))] = ChangeKind.DELETED
    for path in list(found):
        parent = os.path.dirname(path)
        while parent != "/" and parent not in found:
            found[parent] = ChangeKind.MODIFIED
            parent = os.path.dirname(parent)
    return [Change(path, found[path]) for path in sorted(found)]

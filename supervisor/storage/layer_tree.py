"""One layer's tree, built under a directory descriptor from vetted members, never following a symlink.

The writer keeps a mirror of what it has created (the layer dir starts
empty and nothing else writes there): directories as nodes, everything
else as its file type. So no member costs a stat or a path walk: a
member's parent is found in the mirror, a symlink on the way is refused
before any system call, and the directory descriptors of recently used
directories stay open (a small LRU), so creating a file is one `openat`
relative to its parent's descriptor. The kernel still has the last word:
directories are opened with O_NOFOLLOW | O_DIRECTORY, files created with
O_CREAT | O_EXCL | O_NOFOLLOW, nodes, links and symlinks with *at() calls
that never follow their last component, so even a wrong mirror could
only fail, never write through a symlink.

What can reach outside this tree: nothing. Symlinks are stored, never
followed; hardlinks only link entries of this tree. A lower layer's
symlink (`etc -> /host`) is not in this tree at all: this layer's
`etc/passwd` creates a real `etc/` here, and overlayfs shows a directory
of an upper layer instead of a lower layer's non-directory.

Whiteouts (OCI layer spec): a whiteout only hides what lower layers have,
so an entry this layer creates survives a whiteout of its name, in either
order; a whited-out name that this layer then recreates as a directory
becomes an opaque directory, so nothing of the lower one shows through.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable

from supervisor.storage.errors import InvalidLayer, UnsafeLayer
from supervisor.storage.tar_members import LayerMember, MemberKind

OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Mirror tag of an overlay whiteout (a 0/0 character device, made from `.wh.` or given as such).
WHITEOUT = -1
_MAX_OPEN_DIRS = 64
_NODE_TYPES = {
    MemberKind.CHAR_DEVICE: stat.S_IFCHR,
    MemberKind.BLOCK_DEVICE: stat.S_IFBLK,
    MemberKind.FIFO: stat.S_IFIFO,
}

CopyData = Callable[[int], None]


class _Dir:
    __slots__ = ("name", "parent", "children", "fd", "mtime_ns", "opaque", "setgid")

    def __init__(self, name: str, parent: _Dir | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, _Dir | int] = {}
        self.fd: int | None = None
        self.mtime_ns: int | None = None
        self.opaque = False
        # New entries of a setgid directory take its group (and new directories its setgid bit).
        self.setgid: bool = parent.setgid if parent is not None else False


Entry = _Dir | int


class LayerTreeWriter:
    """Applies members to the empty directory `root_fd` (the caller keeps owning that descriptor)."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._root = _Dir("", None)
        self._open: dict[_Dir, None] = {}  # insertion order = least recently used first
        self._euid = os.geteuid()
        self._egid = os.getegid()
        self._root.setgid = bool(os.fstat(root_fd).st_mode & stat.S_ISGID)
        # Files are created with their mode when the umask leaves it whole (and no default ACL
        # overrides the umask), which saves an fchmod per file.
        umask = _current_umask()
        acl = umask is None or "system.posix_acl_default" in os.listxattr(root_fd)
        self._plain_modes = 0 if acl else 0o777 & ~(umask or 0)

    def apply(self, member: LayerMember, copy_data: CopyData | None) -> None:
        """Create `member` (`copy_data(fd)` writes a regular file's content)."""
        if not member.parts:
            self._apply_root(member)
            return
        parent = self._parent(member.parts, member)
        name = member.parts[-1]
        existing = parent.children.get(name)
        kind = member.kind
        if kind is MemberKind.FILE:
            self._file(parent, name, existing, member, copy_data)
        elif kind is MemberKind.DIRECTORY:
            self._directory(parent, name, existing, member)
        elif kind is MemberKind.SYMLINK:
            self._symlink(parent, name, existing, member)
        elif kind is MemberKind.HARDLINK:
            self._hardlink(parent, name, existing, member)
        elif kind is MemberKind.WHITEOUT:
            self._whiteout(parent, name, existing, member)
        elif kind is MemberKind.OPAQUE:
            self._opaque(parent, name, existing, member)
        else:
            self._node(parent, name, existing, member)

    def finish(self) -> None:
        """Set directory mtimes (creating their entries moved them) and close every descriptor."""
        try:
            self._set_dir_times()
        finally:
            self.close()

    def close(self) -> None:
        for node in self._open:
            if node.fd is not None:
                os.close(node.fd)
                node.fd = None
        self._open.clear()

    # -- members ------------------------------------------------------------

    def _apply_root(self, member: LayerMember) -> None:
        if member.kind is MemberKind.OPAQUE:
            raise UnsafeLayer(
                f"layer member {member.name!r}: an opaque whiteout of the layer root cannot be applied "
                "(overlayfs ignores it on a layer's root, so the layers below would show through)"
            )
        self._set_attributes(self._root_fd, member)
        self._root.mtime_ns = member.mtime_ns
        self._root.setgid = bool(member.mode & stat.S_ISGID)

    def _file(
        self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember, copy: CopyData | None
    ) -> None:
        parent_fd = self._fd(parent)
        if existing is not None:
            self._remove(parent, parent_fd, name, existing)
        mode = member.mode
        exact_mode = mode & ~self._plain_modes == 0  # no special bits, none the umask would clear
        fd = os.open(name, _NEW_FILE_FLAGS, mode if exact_mode else 0o600, dir_fd=parent_fd)
        parent.children[name] = stat.S_IFREG
        try:
            if copy is not None:
                copy(fd)
            if member.uid != self._euid or member.gid != self._egid or parent.setgid:
                os.fchown(fd, member.uid, member.gid)  # clears setuid/setgid: before the chmod
            if not exact_mode:
                os.fchmod(fd, mode)
            for key, value in member.xattrs:  # after the chown, which drops security.capability
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))
        finally:
            os.close(fd)

    def _directory(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        node = existing if isinstance(existing, _Dir) else self._mkdir(parent, name, existing)
        self._set_attributes(self._fd(node), member)
        node.mtime_ns = member.mtime_ns
        node.setgid = bool(member.mode & stat.S_ISGID)

    def _symlink(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        assert member.symlink_target is not None
        parent_fd = self._fd(parent)
        if existing is not None:
            self._remove(parent, parent_fd, name, existing)
        os.symlink(member.symlink_target, name, dir_fd=parent_fd)
        parent.children[name] = stat.S_IFLNK
        if (member.uid, member.gid) != (self._euid, self._egid):
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.utime(name, ns=(member.mtime_ns, member.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _hardlink(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        assert member.hardlink_parts is not None
        target = "/".join(member.hardlink_parts)
        source_parent = self._find_dir(member.hardlink_parts[:-1], member, target)
        source_name = member.hardlink_parts[-1]
        source = source_parent.children.get(source_name) if source_parent is not None else None
        if source is None:
            raise InvalidLayer(f"layer member {member.name!r}: hardlink target {target!r} does not exist")
        if isinstance(source, _Dir):
            raise UnsafeLayer(f"layer member {member.name!r}: hardlink to a directory ({target!r})")
        if source == WHITEOUT:
            raise InvalidLayer(f"layer member {member.name!r}: hardlink target {target!r} is a whiteout")
        assert source_parent is not None
        if source_parent is parent and source_name == name:
            return  # a link to itself names what is already there
        source_fd = os.dup(self._fd(source_parent))
        try:
            parent_fd = self._fd(parent)
            if existing is not None:
                self._remove(parent, parent_fd, name, existing)
            # follow_symlinks=False: a link to a symlink links the symlink itself, never its target.
            os.link(source_name, name, src_dir_fd=source_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(source_fd)
        parent.children[name] = source

    def _node(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        parent_fd = self._fd(parent)
        if existing is not None:
            self._remove(parent, parent_fd, name, existing)
        major, minor = member.device or (0, 0)
        file_type = _NODE_TYPES[member.kind]
        os.mknod(name, file_type | 0o600, os.makedev(major, minor), dir_fd=parent_fd)
        # A 0/0 character device is what overlayfs takes for a whiteout, whatever the member meant.
        parent.children[name] = WHITEOUT if file_type == stat.S_IFCHR and (major, minor) == (0, 0) else file_type
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        # We just made this node in a tree nobody else writes to, so naming it is safe.
        os.chmod(name, member.mode, dir_fd=parent_fd)
        os.utime(name, ns=(member.mtime_ns, member.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _whiteout(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        if existing is None:
            parent_fd = self._fd(parent)
            # Overlay's whiteout: a 0/0 character device, as Docker's overlay2 writes it.
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
            parent.children[name] = WHITEOUT
            if (member.uid, member.gid) != (self._euid, self._egid):
                os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        elif isinstance(existing, _Dir):
            # This layer's directory stays; only the lower layers' one is gone.
            self._make_opaque(existing)
        # A non-directory this layer made (or another whiteout) already hides the lower entry.

    def _opaque(self, parent: _Dir, name: str, existing: Entry | None, member: LayerMember) -> None:
        if isinstance(existing, _Dir):
            self._make_opaque(existing)
        elif existing is None or existing == WHITEOUT:
            self._make_opaque(self._mkdir(parent, name, existing, mode=0o755))
        else:
            raise self._not_a_directory(member, member.parts, existing)

    # -- helpers ------------------------------------------------------------

    def _parent(self, parts: tuple[str, ...], member: LayerMember) -> _Dir:
        """The directory node holding `parts`, creating missing directories (0755) on the way, as tar does."""
        node = self._root
        for index in range(len(parts) - 1):
            part = parts[index]
            child = node.children.get(part)
            if isinstance(child, _Dir):
                node = child
            elif child is None or child == WHITEOUT:
                node = self._mkdir(node, part, child, mode=0o755)
            else:
                raise self._not_a_directory(member, parts[: index + 1], child)
        return node

    def _find_dir(self, parts: tuple[str, ...], member: LayerMember, target: str) -> _Dir | None:
        node = self._root
        for index, part in enumerate(parts):
            child = node.children.get(part)
            if child is None or child == WHITEOUT:
                return None
            if not isinstance(child, _Dir):
                raise self._not_a_directory(member, parts[: index + 1], child)
            node = child
        return node

    @staticmethod
    def _not_a_directory(member: LayerMember, parts: tuple[str, ...], file_type: int) -> InvalidLayer:
        where = "/".join(parts)
        if file_type == stat.S_IFLNK:
            return UnsafeLayer(f"layer member {member.name!r}: {where!r} is a symlink; refusing to go through it")
        return InvalidLayer(f"layer member {member.name!r}: {where!r} is not a directory")

    def _mkdir(self, parent: _Dir, name: str, existing: Entry | None, mode: int = 0o700) -> _Dir:
        parent_fd = self._fd(parent)
        if existing is not None:
            self._remove(parent, parent_fd, name, existing)
        os.mkdir(name, mode, dir_fd=parent_fd)
        node = _Dir(name, parent)
        parent.children[name] = node
        if existing == WHITEOUT:
            self._make_opaque(node)  # recreated after a whiteout: nothing of the lower one shows
        return node

    def _make_opaque(self, node: _Dir) -> None:
        if not node.opaque:
            os.setxattr(self._fd(node), OVERLAY_OPAQUE_XATTR, b"y")
            node.opaque = True

    def _remove(self, parent: _Dir, parent_fd: int, name: str, existing: Entry) -> None:
        """Clear the way for a new entry: a later member replaces an earlier one of the same name."""
        if isinstance(existing, _Dir):
            self._forget(existing)
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
        del parent.children[name]

    def _forget(self, top: _Dir) -> None:
        """Close the descriptors of a subtree about to be removed."""
        pending = [top]
        while pending:
            node = pending.pop()
            if node.fd is not None:
                del self._open[node]
                os.close(node.fd)
                node.fd = None
            pending.extend(child for child in node.children.values() if isinstance(child, _Dir))

    def _fd(self, node: _Dir) -> int:
        """An open descriptor of the directory `node` (kept in the LRU; do not close it)."""
        if node is self._root:
            return self._root_fd
        if node.fd is not None:
            del self._open[node]
            self._open[node] = None
            return node.fd
        chain = []
        while node is not self._root and node.fd is None:
            chain.append(node)
            assert node.parent is not None
            node = node.parent
        parent_fd = self._fd(node)
        for child in reversed(chain):
            try:
                fd = os.open(child.name, DIR_FLAGS, dir_fd=parent_fd)
            except BaseException:
                self._evict()
                raise
            child.fd = fd
            self._open[child] = None
            parent_fd = fd
        self._evict()
        return parent_fd

    def _evict(self) -> None:
        while len(self._open) > _MAX_OPEN_DIRS:
            oldest = next(iter(self._open))
            del self._open[oldest]
            assert oldest.fd is not None
            os.close(oldest.fd)
            oldest.fd = None

    def _set_attributes(self, fd: int, member: LayerMember) -> None:
        # Order matters: chown clears setuid/setgid and file capabilities, so it goes first.
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode)
        for name, value in member.xattrs:
            os.setxattr(fd, name, value)
        os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))

    def _set_dir_times(self) -> None:
        """Every directory's mtime, deepest first is not needed: a child's utime leaves its parent's alone."""
        pending = [self._root]
        while pending:
            node = pending.pop()
            subdirs = [child for child in node.children.values() if isinstance(child, _Dir)]
            pending.extend(subdirs)
            if node.mtime_ns is not None:
                fd = self._fd(node)
                os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))


def _current_umask() -> int | None:
    """The process umask, read without setting it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None

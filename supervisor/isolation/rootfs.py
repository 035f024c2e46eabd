"""The container's filesystem view, built inside its own mount namespace.

Runs in the container's first process after it has unshared its mount
namespace. Order matters for safety: the overlay is mounted, then we pivot
into it, and only then are /proc, /dev, /sys and the bind mounts placed,
so every target path is resolved inside the container's tree (a symlink
planted in an image cannot redirect a mount onto the host). Bind sources
are host paths, so each is cloned into a detached mount (open_tree) before
the pivot and attached at its target (move_mount) afterwards. The user's
mounts (binds, volumes, tmpfs) are made shallowest target first, as Docker
sorts them, and before the generated /etc files, which a user's mount at
the same path replaces.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from supervisor.errors import InvalidArgument
from supervisor.isolation import syscalls
from supervisor.isolation.overlay_mount import mount_overlay
from supervisor.isolation.spec import BindMount, LaunchSpec, Rootfs, TmpfsMount
from supervisor.isolation.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)

# (name, type, major, minor) as in runc's default device list.
_DEVICES = (
    ("null", stat.S_IFCHR, 1, 3),
    ("zero", stat.S_IFCHR, 1, 5),
    ("full", stat.S_IFCHR, 1, 7),
    ("random", stat.S_IFCHR, 1, 8),
    ("urandom", stat.S_IFCHR, 1, 9),
    ("tty", stat.S_IFCHR, 5, 0),
)
_DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/core", "/proc/kcore"),
    ("/dev/ptmx", "pts/ptmx"),
)


_MS_SYNCHRONOUS = 16
_MS_DIRSYNC = 128
_MS_NODIRATIME = 2048
_MS_RELATIME = 1 << 21
# tmpfs option -> (set?, flag), as moby's mount.ParseOptions reads them.
_TMPFS_FLAGS = {
    "ro": (True, MS_RDONLY),
    "rw": (False, MS_RDONLY),
    "nosuid": (True, MS_NOSUID),
    "suid": (False, MS_NOSUID),
    "nodev": (True, MS_NODEV),
    "dev": (False, MS_NODEV),
    "noexec": (True, MS_NOEXEC),
    "exec": (False, MS_NOEXEC),
    "sync": (True, _MS_SYNCHRONOUS),
    "async": (False, _MS_SYNCHRONOUS),
    "dirsync": (True, _MS_DIRSYNC),
    "noatime": (True, syscalls.MS_NOATIME),
    "atime": (False, syscalls.MS_NOATIME),
    "nodiratime": (True, _MS_NODIRATIME),
    "diratime": (False, _MS_NODIRATIME),
    "relatime": (True, _MS_RELATIME),
    "norelatime": (False, _MS_RELATIME),
    "strictatime": (True, MS_STRICTATIME),
    "nostrictatime": (False, MS_STRICTATIME),
}
# Every container's mount namespace is private already.
_TMPFS_NOOPS = frozenset({"defaults", "private", "rprivate"})
_TMPFS_DATA = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})


def tmpfs_mount_args(options: Iterable[str]) -> tuple[int, str]:
    """Mount flags and data for a tmpfs: nosuid, nodev, noexec unless an option says otherwise.

    Later options win over earlier ones. ValueError names an option tmpfs
    (or corral) does not take.
    """
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    data: dict[str, str] = {}
    for option in options:
        if option in _TMPFS_NOOPS:
            continue
        if option in _TMPFS_FLAGS:
            enable, flag = _TMPFS_FLAGS[option]
            flags = flags | flag if enable else flags & ~flag
            continue
        key, sep, value = option.partition("=")
        if not sep or key not in _TMPFS_DATA or not value or "," in value:
            raise ValueError(f"invalid tmpfs option {option!r}")
        data[key] = value
    return flags, ",".join(f"{key}={value}" for key, value in data.items())


def _ensure_dir(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _ensure_file(path: str) -> None:
    _ensure_dir(os.path.dirname(path) or "/")
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))


def _clone_bind_sources(binds: Iterable[BindMount]) -> list[tuple[int, bool, BindMount]]:
    clones = []
    for bind in binds:
        is_dir = os.path.isdir(bind.source)
        clones.append((syscalls.open_tree_clone(bind.source), is_dir, bind))
    return clones


def _pivot(rootfs: str) -> None:
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(new_root)
        syscalls.pivot_root(".", ".")
        # The old root now sits on top of the new one; detach it from there.
        os.fchdir(old_root)
        syscalls.mount(None, ".", None, MS_REC | MS_PRIVATE)
        syscalls.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def _mount_proc() -> None:
    _ensure_dir("/proc")
    syscalls.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _mount_dev(console_tree: int | None) -> None:
    _ensure_dir("/dev")
    syscalls.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    old_umask = os.umask(0)
    try:
        for name, kind, major, minor in _DEVICES:
            os.mknod(f"/dev/{name}", kind | 0o666, os.makedev(major, minor))
        for link, target in _DEV_LINKS:
            os.symlink(target, link)
        os.mkdir("/dev/pts", 0o755)
        os.mkdir("/dev/shm", 0o1777)
        os.mkdir("/dev/mqueue", 0o755)
    finally:
        os.umask(old_umask)
    syscalls.mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    syscalls.mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    syscalls.mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if console_tree is not None:
        _ensure_file("/dev/console")
        syscalls.move_mount_to(console_tree, "/dev/console")
        os.close(console_tree)


def _mount_sys() -> None:
    _ensure_dir("/sys")
    syscalls.mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _mount_binds(clones: list[tuple[int, bool, BindMount]]) -> None:
    # Images often make /etc/resolv.conf a symlink (to ../run/...): resolved inside the container.
    for tree_fd, is_dir, bind in clones:
        _attach(tree_fd, is_dir, bind, resolve=True)


def _attach(tree_fd: int, is_dir: bool, bind: BindMount, *, resolve: bool = False) -> None:
    target = _resolve_target(bind.target) if resolve else bind.target
    try:
        if is_dir:
            _ensure_dir(target)
        else:
            _ensure_file(target)
        syscalls.move_mount_to(tree_fd, target)
    finally:
        os.close(tree_fd)
    if bind.readonly:
        # Keep the source's nosuid/nodev/noexec: a bind remount sets exactly the flags it is given.
        kept = os.statvfs(target).f_flag
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC)):
            if kept & st_flag:
                flags |= ms_flag
        syscalls.mount(None, target, None, flags)


def _resolve_target(target: str) -> str:
    """The target with its symlinks followed, as runc's securejoin does: after the pivot they resolve
    inside the container, whatever they say (move_mount would not follow the last one itself). One that
    leads to / would stack a mount under the root, invisible and useless: refused."""
    resolved = os.path.realpath(target)
    if resolved == "/":
        raise InvalidArgument(f"invalid mount destination {target}: it leads to / inside the container")
    return resolved


def _mount_user(clones: list[tuple[int, bool, BindMount]], tmpfs: Iterable[TmpfsMount]) -> None:
    """Binds, volumes and tmpfs mounts, shallowest target first (a stable sort keeps the given order)."""
    pending: list[tuple[int, bool, BindMount] | TmpfsMount] = [*clones, *tmpfs]
    pending.sort(key=lambda item: (item if isinstance(item, TmpfsMount) else item[2]).target.count("/"))
    for index, item in enumerate(pending):
        try:
            if isinstance(item, TmpfsMount):
                target = _resolve_target(item.target)
                _ensure_dir(target)
                flags, data = tmpfs_mount_args(item.options)
                syscalls.mount("tmpfs", target, "tmpfs", flags, data or None)
            else:
                _attach(*item, resolve=True)
        except BaseException:
            for rest in pending[index + 1 :]:
                if not isinstance(rest, TmpfsMount):
                    os.close(rest[0])
            raise


def _mask(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            syscalls.mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
        else:
            syscalls.mount("/dev/null", path, None, MS_BIND)


def _make_readonly(paths: Iterable[str]) -> None:
    for path in paths:
        if not os.path.lexists(path):
            continue
        syscalls.mount(path, path, None, MS_BIND | MS_REC)
        syscalls.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_REC)


def _mount_overlay(rootfs: Rootfs) -> None:
    # From the state root, with relative paths; images too deep for one page of options name
    # their layers by descriptor (overlay_mount.py).
    mount_overlay(rootfs)


def _clone_etc_files(files: tuple[tuple[str, str], ...], scratch: str) -> list[tuple[int, bool, BindMount]]:
    """Write the generated files to a private tmpfs and clone each for binding.

    A tmpfs rather than the host files, so the container's mountinfo shows
    `/hostname`, not a path on the host.
    """
    if not files:
        return []
    syscalls.mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=256k,mode=755")
    clones = []
    for target, content in files:
        source = os.path.join(scratch, os.path.basename(target))
        with open(source, "w", encoding="utf-8") as file:
            file.write(content)
        os.chmod(source, 0o644)
        clones.append((syscalls.open_tree_clone(source), False, BindMount(source, target)))
    return clones


def buildable_ahead(spec: LaunchSpec) -> bool:
    """Whether `spec`'s tree can be built before its container exists (launcher/spares.py): nothing
    in it may come from the host after the pivot (binds, whose sources could change meanwhile) or
    from its start (the pty bound at /dev/console)."""
    return not spec.binds and not spec.tmpfs and not spec.tty


def same_shape(built: LaunchSpec, spec: LaunchSpec) -> bool:
    """Whether the tree built for `built` has `spec`'s mounts, its generated files' contents aside
    (refresh_etc_files); its layers and dirs are `same_tree`'s business."""
    return (
        buildable_ahead(built)
        and buildable_ahead(spec)
        and [target for target, _ in built.etc_files] == [target for target, _ in spec.etc_files]
        and built.masked_paths == spec.masked_paths
        and built.readonly_paths == spec.readonly_paths
    )


def same_tree(built: LaunchSpec, spec: LaunchSpec) -> bool:
    """Whether the tree built for `built` serves `spec`: the same shape over the same overlay."""
    return same_shape(built, spec) and built.rootfs == spec.rootfs


def refresh_etc_files(built: LaunchSpec, spec: LaunchSpec) -> None:
    """Rewrite the generated files whose contents `spec` wants otherwise, in the tree built for
    `built`; after the pivot, so their paths resolve inside the container, as their binds did."""
    for (target, old), (_, new) in zip(built.etc_files, spec.etc_files, strict=True):
        if new != old:
            with open(target, "w", encoding="utf-8") as file:
                file.write(new)


def build_rootfs(spec: LaunchSpec, tty_slave_fd: int | None = None) -> None:
    """Mount the container's tree and pivot into it; the caller has its own mount namespace."""
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount_overlay(spec.rootfs)
    user_sources = _clone_bind_sources(spec.binds)
    sources = _clone_etc_files(spec.etc_files, os.path.join(spec.rootfs.base, spec.rootfs.scratch))
    # By name: the descriptor's mount belongs to the host's namespace, and open_tree wants ours.
    console = syscalls.open_tree_clone(os.ttyname(tty_slave_fd)) if tty_slave_fd is not None else None
    _pivot(spec.rootfs.merged)
    _mount_proc()
    _mount_dev(console)
    _mount_sys()
    _mount_user(user_sources, spec.tmpfs)
    _mount_binds(sources)
    _mask(spec.masked_paths)
    _make_readonly(spec.readonly_paths)

"""The container's filesystem view, built inside its own mount namespace.

Runs in the container's first process after it has unshared its mount
namespace. Order matters for safety: the overlay is mounted, then we pivot
into it, and only then are /proc, /dev, /sys and the bind mounts placed,
so every target path is resolved inside the container's tree (a symlink
planted in an image cannot redirect a mount onto the host). Bind sources
are host paths, so each is cloned into a detached mount (open_tree) before
the pivot and attached at its target (move_mount) afterwards.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from supervisor.isolation import syscalls
from supervisor.isolation.spec import BindMount, LaunchSpec, Rootfs
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
    for tree_fd, is_dir, bind in clones:
        if is_dir:
            _ensure_dir(bind.target)
        else:
            _ensure_file(bind.target)
        syscalls.move_mount_to(tree_fd, bind.target)
        os.close(tree_fd)
        if bind.readonly:
            syscalls.mount(None, bind.target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


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
    os.chdir(rootfs.base)
    syscalls.mount("overlay", rootfs.merged, "overlay", 0, rootfs.overlay_options())


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


def build_rootfs(spec: LaunchSpec, tty_slave_fd: int | None = None) -> None:
    """Mount the container's tree and pivot into it; the caller has its own mount namespace."""
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount_overlay(spec.rootfs)
    sources = _clone_bind_sources(spec.binds)
    sources += _clone_etc_files(spec.etc_files, os.path.join(spec.rootfs.base, spec.rootfs.scratch))
    # By name: the descriptor's mount belongs to the host's namespace, and open_tree wants ours.
    console = syscalls.open_tree_clone(os.ttyname(tty_slave_fd)) if tty_slave_fd is not None else None
    _pivot(spec.rootfs.merged)
    _mount_proc()
    _mount_dev(console)
    _mount_sys()
    _mount_binds(sources)
    _mask(spec.masked_paths)
    _make_readonly(spec.readonly_paths)

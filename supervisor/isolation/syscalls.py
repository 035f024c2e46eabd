"""Thin ctypes wrappers for the syscalls Python 3.11 lacks.

unshare, setns, mount, umount2, pivot_root and prctl: each raises OSError
with the errno and the path or flags it was given, so a failure inside a
container's set-up names what it was doing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
# A PyDLL call keeps the GIL, which clone3 needs: the child must wake up holding it, as after fork().
_libc_keeping_gil = ctypes.PyDLL(None, use_errno=True)
_libc_keeping_gil.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# open_tree and move_mount have the same number on every architecture (the unified syscall table).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004

_SYS_CLONE3 = 435
CLONE_PIDFD = 0x00001000
CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
            "stack_size", "tls", "set_tid", "set_tid_size", "cgroup",
        )
    ]  # fmt: skip


_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data is not None else None,
        ),
        f"mount {fstype or 'bind'} on {target}",
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT[platform.machine()]
    _check(_libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()), f"pivot_root {new_root}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def open_tree_clone(path: str) -> int:
    """A detached bind mount of `path`, to attach later with `move_mount_to` (even after a pivot_root)."""
    return _check(
        _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(AT_FDCWD),
            path.encode(),
            ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
        ),
        f"open_tree {path}",
    )


def move_mount_to(tree_fd: int, target: str) -> None:
    _check(
        _libc.syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(tree_fd),
            b"",
            ctypes.c_int(AT_FDCWD),
            target.encode(),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        ),
        f"move_mount onto {target}",
    )


def clone_process(flags: int, cgroup_fd: int | None = None) -> tuple[int, int]:
    """fork() through clone3: new namespaces in `flags`, born in the cgroup `cgroup_fd` (v2).

    Returns (pid, pidfd) in the parent and (0, -1) in the child. Python's
    own fork hooks run around it exactly as os.fork() runs them.
    """
    pidfd = ctypes.c_int(-1)
    args = _CloneArgs(
        flags=flags | CLONE_PIDFD | (CLONE_INTO_CGROUP if cgroup_fd is not None else 0),
        pidfd=ctypes.addressof(pidfd),
        exit_signal=signal.SIGCHLD,
        cgroup=cgroup_fd if cgroup_fd is not None else 0,
    )
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _libc_keeping_gil.syscall(
        ctypes.c_long(_SYS_CLONE3), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))
    )
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0, -1
    errno = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(errno, f"clone3({flags:#x}): {os.strerror(errno)}")
    return pid, pidfd.value


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor not in `keep` (close_range(2) under os.closerange)."""
    low = 0
    for fd in sorted(keep):
        # Never an empty range: os.closerange(0, 0) asks close_range(2) for 0 to UINT_MAX.
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))

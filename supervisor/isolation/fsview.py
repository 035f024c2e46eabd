"""A container's overlay as a detached mount: for the daemon's own reads and writes (cp, export).

A stopped container's filesystem exists only as directories (image layers,
its upper dir). fsopen/fsconfig/fsmount build an overlay that is attached
nowhere: no mount namespace, no mount point, nothing in any mountinfo. The
returned descriptor is the mount's root; the mount lives exactly as long
as that descriptor, so closing it is the unmount and a crashed daemon
leaves nothing behind.

Layers are passed one by one (`lowerdir+`, Linux 6.8), so no escaping and
no page limit on the option string; older kernels get the one-string
`lowerdir` instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# The same numbers on every architecture (the unified syscall table).
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _fsopen(fstype: str) -> int:
    return _check(_libc.syscall(ctypes.c_long(_SYS_FSOPEN), fstype.encode(), ctypes.c_uint(FSOPEN_CLOEXEC)), "fsopen")


def _set_string(fs_fd: int, key: str, value: str) -> None:
    _check(
        _libc.syscall(
            ctypes.c_long(_SYS_FSCONFIG),
            ctypes.c_int(fs_fd),
            ctypes.c_uint(FSCONFIG_SET_STRING),
            key.encode(),
            os.fsencode(value),
            ctypes.c_int(0),
        ),
        f"overlay option {key}={value}",
    )


def _create_and_mount(fs_fd: int, attributes: int) -> int:
    _check(
        _libc.syscall(
            ctypes.c_long(_SYS_FSCONFIG), ctypes.c_int(fs_fd), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, 0
        ),
        "overlay create",
    )
    return _check(
        _libc.syscall(
            ctypes.c_long(_SYS_FSMOUNT), ctypes.c_int(fs_fd), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attributes)
        ),
        "fsmount",
    )


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def mount_overlay(
    lowers: Sequence[str], upper: str | None = None, work: str | None = None, *, readonly: bool = True
) -> int:
    """A detached overlay of `lowers` (top-most first) with an optional upper/work pair.

    Returns the mount's root descriptor (O_PATH-like: use it as a dir fd,
    or open "." under it to list). Closing it unmounts. Read-only views
    need at least two lowers (overlay's rule without an upper dir).
    """
    if (upper is None) != (work is None):
        raise ValueError("an overlay needs both an upper and a work dir, or neither")
    attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | (MOUNT_ATTR_RDONLY if readonly else 0)
    try:
        return _mount(lowers, upper, work, attributes, one_by_one=True)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        # Kernels before 6.8 know no `lowerdir+`.
        return _mount(lowers, upper, work, attributes, one_by_one=False)


def _mount(lowers: Sequence[str], upper: str | None, work: str | None, attributes: int, *, one_by_one: bool) -> int:
    fs_fd = _fsopen("overlay")
    try:
        if one_by_one:
            for lower in lowers:
                _set_string(fs_fd, "lowerdir+", lower)
        else:
            _set_string(fs_fd, "lowerdir", ":".join(_escape(lower) for lower in lowers))
        if upper is not None and work is not None:
            _set_string(fs_fd, "upperdir", upper)
            _set_string(fs_fd, "workdir", work)
        return _create_and_mount(fs_fd, attributes)
    finally:
        os.close(fs_fd)


_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x04
_MOVE_MOUNT_T_EMPTY_PATH = 0x40
_MS_PRIVATE = 1 << 18


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def attach_bind(source: str, target_fd: int, *, readonly: bool) -> None:
    """Bind the host path `source` (recursively) onto `target_fd`, a descriptor (O_PATH will do)
    of a directory or file inside a detached view, resolved in that view's root by the caller.

    The clone is made private first, so nothing propagates between it and
    the host's mount it came from. Needs Linux 6.15 (mounts under a
    detached tree); OSError otherwise.
    """
    tree = _check(
        _libc.syscall(
            ctypes.c_long(_SYS_OPEN_TREE),
            ctypes.c_int(_AT_FDCWD),
            os.fsencode(source),
            ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE),
        ),
        f"open_tree {source}",
    )
    try:
        attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY if readonly else 0, propagation=_MS_PRIVATE)
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_MOUNT_SETATTR),
                ctypes.c_int(tree),
                b"",
                ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"mount_setattr {source}",
        )
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_MOVE_MOUNT),
                ctypes.c_int(tree),
                b"",
                ctypes.c_int(target_fd),
                b"",
                ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH),
            ),
            f"move_mount {source}",
        )
    finally:
        os.close(tree)

"""Mounting a container's overlay from the state root, whatever its number of layers.

mount(2) copies at most one page of option data: 4096 bytes with the
terminating NUL. With every path relative to the state root, a lower dir
is `layers/<64 hex>` (72 bytes with its separator) and the upper and work
dirs take about 180 more, so 54 layers fit; measured on 6.18, 54 layers
(4076 bytes) mount and 55 (4148) fail with ENOENT, the last path cut short.
Images of more layers (Docker allows up to 125) take the fallback: each
lower dir is opened with O_PATH and named `/proc/self/fd/N` (about 17
bytes), as libcomposefs does, which fits about 230 layers on any kernel
with overlayfs; overlay takes its own references while mounting, so the
descriptors are closed right after. The common case stays one mount(2)
call with no per-layer work beyond the option string the daemon built.
"""

from __future__ import annotations

import errno
import os

from supervisor.isolation import syscalls
from supervisor.isolation.spec import Rootfs

# mount(2) copies one page, NUL included.
MAX_OPTIONS = 4095


def mount_overlay(rootfs: Rootfs) -> None:
    """Mount the overlay on `rootfs.merged`; the caller is in the container's own mount namespace."""
    os.chdir(rootfs.base)
    options = rootfs.overlay_options()
    if len(options.encode()) <= MAX_OPTIONS:
        syscalls.mount("overlay", rootfs.merged, "overlay", 0, options)
        return
    fds: list[int] = []
    try:
        for lower in rootfs.lowers:
            fds.append(os.open(lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        options = fd_options(fds, rootfs.upper, rootfs.work)
        if len(options.encode()) > MAX_OPTIONS:
            raise OSError(
                errno.E2BIG,
                f"an image of {len(fds)} layers is too deep for one overlay mount (its options exceed one page)",
            )
        syscalls.mount("overlay", rootfs.merged, "overlay", 0, options)
    finally:
        for fd in fds:
            os.close(fd)


def fd_options(lower_fds: list[int], upper: str, work: str) -> str:
    """Overlay options naming the lower dirs (top-most first) by descriptor."""
    lowerdir = ":".join(f"/proc/self/fd/{fd}" for fd in lower_fds)
    return f"lowerdir={lowerdir},upperdir={upper},workdir={work}"

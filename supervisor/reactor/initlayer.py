"""A container's lower dirs: its image's layers plus its init layer (see storage/initlayer.py).

The init layer holds the mount points the runtime (isolation/rootfs.py)
would otherwise create in the container's upper dir: /proc, /dev, /sys
and the generated /etc files' targets. Made on the container's first
start (so containers created before it existed get one too), kept until
the container is removed with its directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from supervisor.storage.initlayer import ensure_init_layer, init_layer_path

# What isolation/rootfs.py mounts on in every container (reactor/launchspec.py's etc_files targets).
RUNTIME_DIRS = ("/proc", "/dev", "/sys")
RUNTIME_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def with_init_layer(container_dir: Path, image_layers: Sequence[Path]) -> list[Path]:
    """The overlay's lower dirs for a start, bottom-most first: image layers, then the init layer (made if missing)."""
    return [*image_layers, ensure_init_layer(container_dir, image_layers, RUNTIME_DIRS, RUNTIME_FILES)]


def container_lowers(container_dir: Path, image_layers: Sequence[Path]) -> list[Path]:
    """The lower dirs a container's upper dir sits on, for diff, commit and reads of its tree.

    Without an init layer (never started, or created before corral had
    them) the image's layers alone.
    """
    init = init_layer_path(container_dir)
    return [*image_layers, init] if init.is_dir() else list(image_layers)

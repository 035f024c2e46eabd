"""Import: a rootfs tarball (plain or gzip) as a one-layer image, as `docker import` makes one.

The tarball is a layer like any other: it is unpacked once, here, through
the same vetting every layer gets (storage/tar_members.py, layers.py), so
a hostile archive is refused before any image names it, and only then
stored. The config starts empty (Docker's: no Env, no Cmd) and takes the
`--change` instructions; the message is the image's comment and its one
history entry's.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from supervisor.storage.bootstrap import goarch
from supervisor.storage.commit import history_entry
from supervisor.storage.images import Image, ImageStore
from supervisor.storage.instructions import apply_changes
from supervisor.storage.layers import unpack_layer
from supervisor.storage.layerstats import layer_stats

log = structlog.get_logger(__name__)


def import_config(changes: Sequence[str], message: str, created: str) -> dict[str, Any]:
    """The imported image's config (InvalidArgument for a bad instruction, before anything is read)."""
    config: dict[str, Any] = {
        "architecture": goarch(platform.machine()),
        "os": "linux",
        "created": created,
        "config": apply_changes({}, changes),
        "history": [history_entry(created=created, created_by="", author="", comment=message, empty_layer=False)],
    }
    if message:
        config["comment"] = message
    return config


def import_layer(store: ImageStore, tarball: Path, config: dict[str, Any], tags: Sequence[str]) -> Image:
    """Vet and unpack `tarball`, then store it as the one layer of an image with `config`, tagged `tags`.

    InvalidLayer/UnsafeLayer (InvalidArgument) if it is not a (gzip) tar or a member is hostile;
    nothing is stored then.
    """
    # The lease keeps GC from taking the unpacked layer before the image names it.
    with store.lease():
        with open(tarball, "rb") as blob:
            stats = layer_stats(blob)
        unpack_layer(tarball, stats.diff_id, store.layers_root)
        image = store.add_image(config, [tarball], tags)
    log.info("image.imported", id=image.id, diff_id=stats.diff_id, tags=list(tags))
    return image

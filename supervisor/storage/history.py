"""`docker history`: an image's config history, newest first, as Docker's ImageHistory builds it.

Each history entry that is not an `empty_layer` accounts for the next
layer (its size is that layer's). The newest entry carries the image's own
ID and tags; the entry below it the parent image's (the image it was
committed from), and so on up the parent chain; entries past the chain's
end show `<missing>` as their ID: their layers came with the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervisor.errors import NotFound
from supervisor.storage.errors import CorruptContent
from supervisor.storage.images import Image, ImageStore
from supervisor.timestamps import parse_rfc3339_ns

MISSING = "<missing>"
# time.Time{}.Unix() in Go: what Docker shows for an entry without a creation time.
_ZERO_TIME_SECONDS = -62135596800


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    created: int  # Unix seconds
    created_by: str
    tags: tuple[str, ...] | None  # None (JSON null) where Docker has no tags
    size: int
    comment: str


def image_history(store: ImageStore, image: Image) -> list[HistoryEntry]:
    rows: list[tuple[int, str, int, str]] = []
    layer = 0
    for item in image.config.get("history") or []:
        entry: dict[str, Any] = item if isinstance(item, dict) else {}
        size = 0
        if not entry.get("empty_layer"):
            if layer >= len(image.layer_sizes):
                raise CorruptContent(f"image {image.id}: too many non-empty layers in History section")
            size = image.layer_sizes[layer]
            layer += 1
        created_ns = parse_rfc3339_ns(str(entry.get("created", "")))
        created = created_ns // 1_000_000_000 if created_ns is not None else _ZERO_TIME_SECONDS
        rows.append((created, str(entry.get("created_by", "")), size, str(entry.get("comment", ""))))
    rows.reverse()
    entries: list[HistoryEntry] = []
    current: Image | None = image
    for created, created_by, size, comment in rows:
        image_id, tags = MISSING, None
        if current is not None:
            image_id, tags = current.id, current.repo_tags or None
            current = _parent(store, current)
        entries.append(HistoryEntry(image_id, created, created_by, tags, size, comment))
    return entries


def _parent(store: ImageStore, image: Image) -> Image | None:
    if not image.parent:
        return None
    try:
        return store.resolve(image.parent)
    except NotFound:
        return None

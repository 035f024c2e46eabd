"""`GET /images/json`: which images to list and with which references, by Docker's rules.

Filters (daemon/images/images.go): `dangling=true|false`, `label=key` /
`key=value`, `before=`/`since=` an image (created strictly before/after
it), `reference=` a path.Match pattern on familiar names, which also
narrows the references listed. Without `all`, untagged images that
others were committed from (intermediate images) are left out. Untagged
images list as `<none>:<none>` / `<none>@<none>`, as Docker lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from supervisor.errors import InvalidArgument
from supervisor.storage.images import Image, ImageStore
from supervisor.storage.refmatch import check_pattern, familiar_match
from supervisor.timestamps import parse_rfc3339_ns

LIST_FILTERS = frozenset({"dangling", "label", "before", "since", "reference"})


@dataclass(frozen=True)
class ListedImage:
    image: Image
    repo_tags: tuple[str, ...] | None  # None: JSON null, as Docker sends for "no tags"
    repo_digests: tuple[str, ...] | None


def list_images(store: ImageStore, filters: Mapping[str, Sequence[str]], *, all_images: bool) -> list[ListedImage]:
    """Blocks on the disk: call it from a worker thread."""
    unknown = sorted(set(filters) - LIST_FILTERS)
    if unknown:
        raise InvalidArgument(f"Invalid filter '{unknown[0]}'")
    dangling_only = _dangling(filters)
    patterns = list(filters.get("reference", ()))
    for pattern in patterns:
        check_pattern(pattern)
    before = _created_ns(store.resolve(filters["before"][-1])) if filters.get("before") else None
    since = _created_ns(store.resolve(filters["since"][-1])) if filters.get("since") else None
    images = store.list_images()
    parents = {image.parent for image in images if image.parent}
    listed: list[ListedImage] = []
    for image in images:
        created = _created_ns(image)
        if before is not None and created >= before:
            continue
        if since is not None and created <= since:
            continue
        if filters.get("label") and not _labels_match(image, filters["label"]):
            continue
        refs = [r for r in image.references if not patterns or any(familiar_match(p, r) for p in patterns)]
        tags = tuple(r for r in refs if "@" not in r) or None
        digests = tuple(r for r in refs if "@" in r) or None
        if tags is None and digests is None:
            if not all_images and image.id in parents:
                continue
            if dangling_only is False or patterns:
                continue
            listed.append(ListedImage(image, ("<none>:<none>",), ("<none>@<none>",)))
        elif dangling_only and tags:
            continue
        else:
            listed.append(ListedImage(image, tags, digests))
    return listed


def _dangling(filters: Mapping[str, Sequence[str]]) -> bool | None:
    values = set(filters.get("dangling", ()))
    if not values:
        return None
    if values == {"true"}:
        return True
    if values == {"false"}:
        return False
    raise InvalidArgument(f"Invalid filter 'dangling=[{' '.join(sorted(values))}]'")


def _created_ns(image: Image) -> int:
    return parse_rfc3339_ns(image.created) or 0


def _labels_match(image: Image, wanted: Sequence[str]) -> bool:
    labels = (image.config.get("config") or {}).get("Labels") or {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True

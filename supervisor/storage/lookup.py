"""Which stored image a user's text names, by Docker's rules (daemon/images/image.go GetImage).

In order: a bare 64-hex ID or `sha256:<64 hex>` names an image ID exactly;
otherwise the text is a reference (`busybox`, `user/app:v1`,
`host:5000/x@sha256:...`, tag `latest` by default) looked up in the refs
table; failing that, an image ID prefix (with or without `sha256:`), which
must be unique. Unlike Docker, which answers "No such image" for an
ambiguous prefix, the ambiguity is reported with the IDs it matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.digest import digest_hex
from supervisor.storage.reference import Reference, parse_reference

_FULL_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")


def find_manifest(
    text: str,
    refs: Mapping[str, str],
    manifests: Iterable[str],
    config_of: Callable[[str], str | None],
) -> str:
    """The manifest digest `text` names; `manifests` are every stored one, `config_of` maps one to its image ID."""
    stored = sorted(set(manifests) | set(refs.values()))
    full_id = _FULL_ID.match(text)
    if full_id:
        image_id = f"sha256:{full_id.group(1)}"
        found = [digest for digest in stored if config_of(digest) == image_id]
        if not found:
            raise NotFound(f"No such image: {image_id}")
        return pick_manifest(found, refs)
    ref: Reference | None = None
    try:
        ref = parse_reference(text)
    except InvalidArgument:
        if not _ID_PREFIX.match(text):
            raise
    if ref is not None:
        manifest_digest = refs.get(ref.familiar_with_tag)
        if manifest_digest is not None:
            return manifest_digest
        if ref.digest is not None and ref.digest in stored:
            return ref.digest
    prefix = _ID_PREFIX.match(text)
    if prefix:
        by_id: dict[str, list[str]] = {}
        for digest in stored:
            config = config_of(digest)
            if config is not None and digest_hex(config).startswith(prefix.group(1)):
                by_id.setdefault(config, []).append(digest)
        if len(by_id) > 1:
            ids = ", ".join(sorted(by_id))
            raise InvalidArgument(f"ambiguous image ID prefix {text!r}: it matches {ids}")
        if by_id:
            return pick_manifest(by_id.popitem()[1], refs)
    raise NotFound(f"No such image: {ref.familiar_with_tag if ref else text}")


def is_id_text(image_id: str, text: str) -> bool:
    """Whether `text` names `image_id` by ID (Docker's isImageIDPrefix) rather than by reference."""
    return image_id.startswith(text) or digest_hex(image_id).startswith(text)


def pick_manifest(manifest_digests: list[str], refs: Mapping[str, str]) -> str:
    """Of several manifests of one image ID, prefer one that is tagged."""
    tagged = set(refs.values())
    return next((digest for digest in manifest_digests if digest in tagged), manifest_digests[0])


def ref_sort_key(name: str) -> str:
    """Docker lists an image's references sorted by their full names (`docker.io/library/...`)."""
    try:
        return parse_reference(name).full
    except InvalidArgument:
        return name

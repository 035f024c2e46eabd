"""Reference patterns, layer sizes, history, parents, lookups by Docker's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.digest import digest_hex
from supervisor.storage.history import MISSING, image_history
from supervisor.storage.images import ImageStore
from supervisor.storage.layerstats import layer_stats
from supervisor.storage.lookup import is_id_text
from supervisor.storage.refmatch import check_pattern, familiar_match

from .tarbuild import directory, file, hardlink, symlink, tar_bytes


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.mark.parametrize(
    ("pattern", "reference", "matches"),
    [
        ("busybox", "busybox:latest", True),  # the familiar name matches too
        ("busybox:latest", "busybox:latest", True),
        ("busybox:1*", "busybox:latest", False),
        ("user/*", "user/app:v1", True),
        ("*/app", "user/app:v1", True),
        ("*", "user/app:v1", False),  # * does not cross /
        ("*", "busybox:latest", True),
        ("*/*/app", "localhost:5000/user/app:latest", True),
        ("localhost:5000/*/app", "localhost:5000/user/app:latest", True),
        ("bu?ybox", "busybox:latest", True),
        ("[a-c]usybox", "busybox:latest", True),
        ("[^b]usybox", "busybox:latest", False),
        ("busy\\box", "busybox:latest", True),
        ("app@sha256:*", "app@sha256:" + "a" * 64, True),
    ],
)
def test_reference_filter_is_gos_path_match(pattern: str, reference: str, matches: bool) -> None:
    assert familiar_match(pattern, reference) is matches


@pytest.mark.parametrize("pattern", ["[", "[a-", "x\\", "[]", "[z-a]"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        check_pattern(pattern)


def test_layer_size_is_what_it_unpacks_to() -> None:
    import io

    layer = tar_bytes(
        directory("d/"),
        file("d/a", b"12345"),
        hardlink("d/b", "d/a"),  # free, as Docker's DiffSize counts inodes once
        symlink("d/link", "a"),  # 1 byte: the length of its target
        file("d/dup", b"first version"),
        file("d/dup", b"second"),  # a later member replaces the earlier one
        file(".wh.gone"),
    )
    stats = layer_stats(io.BytesIO(layer))
    assert stats.content_size == 5 + 1 + 6
    assert stats.gzipped and stats.tar_size % 512 == 0
    plain = layer_stats(io.BytesIO(tar_bytes(file("x", b"abc"), gzipped=False)))
    assert not plain.gzipped and plain.content_size == 3
    assert layer_stats(io.BytesIO(b"")).content_size == 0


def _config(history: list[dict[str, Any]], n: int = 0) -> dict[str, Any]:
    return {"os": "linux", "created": f"2024-01-01T00:00:{n:02d}Z", "config": {}, "history": history}


def test_history_walks_the_parent_chain(store: ImageStore) -> None:
    base_history = [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs", "comment": "base"}]
    base = store.add_image(_config(base_history), [tar_bytes(file("f", b"0123456789"))], ["base:1"])
    child_history = [
        *base_history,
        {"created": "2024-01-01T00:00:05Z", "created_by": "/bin/sh -c #(nop)  ENV A=b", "empty_layer": True},
        {"created": "2024-01-01T00:00:06Z", "created_by": "sh -c echo x > /x", "comment": "msg"},
    ]
    layers = [tar_bytes(file("f", b"0123456789")), tar_bytes(file("x", b"x\n"))]
    child = store.add_image(_config(child_history, 6), layers, ["child:1", "child:2"], parent=base.id)
    assert child.parent == base.id and store.children(base.id) == [child.id]
    entries = image_history(store, child)
    assert [(e.id, e.tags, e.size, e.created_by, e.comment) for e in entries] == [
        (child.id, ("child:1", "child:2"), 2, "sh -c echo x > /x", "msg"),
        (base.id, ("base:1",), 0, "/bin/sh -c #(nop)  ENV A=b", ""),
        (MISSING, None, 10, "ADD rootfs", "base"),
    ]
    assert entries[0].created == 1704067206
    # Without its parent the chain stops at the image itself.
    store.untag("base:1")
    store.remove_image(base.id)
    assert [e.id for e in image_history(store, store.resolve("child:1"))] == [child.id, MISSING, MISSING]


def test_lookup_rules(store: ImageStore) -> None:
    image = store.add_image(_config([]), [tar_bytes(file("f"))], ["app:v1"])
    hex_id = digest_hex(image.id)
    assert store.resolve(hex_id).id == image.id
    assert store.resolve("sha256:" + hex_id[:7]).id == image.id
    with pytest.raises(NotFound, match=f"^No such image: sha256:{'0' * 64}$"):
        store.resolve("0" * 64)
    with pytest.raises(NotFound, match="^No such image: abcdef:latest$"):
        store.resolve("abcdef" if not hex_id.startswith("abcdef") else "fedcba")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        store.resolve("sha256:")
    assert is_id_text(image.id, hex_id[:5]) and is_id_text(image.id, "sha256:" + hex_id[:5])
    assert not is_id_text(image.id, "app:v1")


def test_one_image_under_two_manifests_lists_once(store: ImageStore) -> None:
    gz = store.add_image(_config([]), [tar_bytes(file("f", b"same"))], ["gz:1"])
    plain = store.add_image(_config([]), [tar_bytes(file("f", b"same"), gzipped=False)], ["plain:1"])
    assert gz.id == plain.id and gz.manifest_digest != plain.manifest_digest
    [listed] = store.list_images()
    assert listed.repo_tags == ("gz:1", "plain:1")
    removed = store.remove_image(gz.id)
    assert removed.repo_tags == ("gz:1", "plain:1") and store.list_images() == []


def test_repo_tags_sort_by_full_name_and_tag_time_is_kept(store: ImageStore) -> None:
    image = store.add_image(_config([]), [tar_bytes(file("f"))], ["busybox:latest"])
    store.tag("busybox", "user/app:v1")
    tagged = store.tag("busybox", "localhost:5000/user/app")
    # docker.io/library/busybox < docker.io/user/app < localhost:5000/user/app, as Docker lists them.
    assert tagged.repo_tags == ("busybox:latest", "user/app:v1", "localhost:5000/user/app:latest")
    assert tagged.last_tag_time > "2024" and image.last_tag_time <= tagged.last_tag_time

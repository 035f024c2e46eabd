from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage.digest import digest_hex
from supervisor.storage.errors import CorruptContent
from supervisor.storage.images import Image, ImageStore, canonical_json

from .tarbuild import file, plain_tar, tar_bytes


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


def _config(created: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux", "created": created, "config": {"Cmd": ["sh"]}}


def _add(store: ImageStore, tags: list[str], created: str = "2024-01-01T00:00:00Z", content: bytes = b"a") -> Image:
    return store.add_image(_config(created), [tar_bytes(file("f", content))], tags)


def test_add_image_writes_an_oci_layout(store: ImageStore, tmp_path: Path) -> None:
    bottom = tar_bytes(file("bottom", b"1"))
    top = tar_bytes(file("top", b"2"), gzipped=False)
    image = store.add_image(_config(), [bottom, top], ["app:v1"])
    images = tmp_path / "root" / "images"
    assert json.loads((images / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    config_bytes = (images / "blobs/sha256" / digest_hex(image.id)).read_bytes()
    assert image.id == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    assert image.diff_ids == tuple("sha256:" + hashlib.sha256(plain_tar(b)).hexdigest() for b in (bottom, top))
    assert json.loads(config_bytes)["rootfs"] == {"type": "layers", "diff_ids": list(image.diff_ids)}
    assert [layer["mediaType"] for layer in image.manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar",
    ]
    assert image.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    index = json.loads((images / "index.json").read_text())
    assert index["schemaVersion"] == 2
    [descriptor] = index["manifests"]
    assert descriptor["digest"] == image.manifest_digest
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert descriptor["annotations"]["io.containerd.image.name"] == "docker.io/library/app:v1"
    refs = json.loads((images / "refs.json").read_text())["refs"]
    assert refs == {"app:v1": image.manifest_digest}
    assert image.repo_tags == ("app:v1",)
    assert image.created == "2024-01-01T00:00:00Z"
    # Docker's size: the bytes the layers unpack to, not their tars.
    assert image.layer_sizes == (1, 1) and image.size == 2


def test_resolve_by_name_id_and_prefix(store: ImageStore) -> None:
    image = _add(store, ["busybox:latest"])
    hex_id = digest_hex(image.id)
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        image.id,
        hex_id,
        hex_id[:12],
        hex_id[:1],
        "sha256:" + hex_id[:5],
    ]:
        assert store.resolve(name) == image, name
    assert store.exists("busybox") and not store.exists("busybox:nosuch")


def test_unknown_images(store: ImageStore) -> None:
    _add(store, ["busybox:latest"])
    with pytest.raises(NotFound, match="^No such image: busybox:nosuch$"):
        store.resolve("busybox:nosuch")
    with pytest.raises(NotFound, match="^No such image: other:latest$"):
        store.resolve("other")
    with pytest.raises(NotFound, match="No such image: sha256:" + "0" * 64):
        store.resolve("sha256:" + "0" * 64)
    with pytest.raises(InvalidArgument, match="must be lowercase"):
        store.resolve("BusyBox")


def test_ambiguous_prefix(store: ImageStore) -> None:
    by_first_char: dict[str, Image] = {}
    for n in range(17):  # 17 IDs over 16 hex digits: two must share the first one
        image = _add(store, [], created=f"2024-01-01T00:00:{n:02d}Z")
        first = digest_hex(image.id)[0]
        if first in by_first_char:
            break
        by_first_char[first] = image
    with pytest.raises(InvalidArgument, match=f"ambiguous image ID prefix '{first}'"):
        store.resolve(first)


def test_ref_wins_over_id_prefix(store: ImageStore) -> None:
    target = _add(store, [], content=b"target")
    named = _add(store, [digest_hex(target.id)[:6]], content=b"named")
    assert store.resolve(digest_hex(target.id)[:6]) == named


def test_tag_untag_and_list(store: ImageStore) -> None:
    image = _add(store, ["app:1"])
    tagged = store.tag("app:1", "registry.example:5000/team/app:prod")
    assert tagged.repo_tags == ("app:1", "registry.example:5000/team/app:prod")
    assert store.resolve("registry.example:5000/team/app:prod").id == image.id
    with pytest.raises(InvalidArgument, match="digest"):
        store.tag("app:1", "app@sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        store.tag("nosuch", "x:y")
    assert store.untag("app:1").repo_tags == ("registry.example:5000/team/app:prod",)
    with pytest.raises(NotFound, match="No such image: app:1"):
        store.untag("app:1")
    store.untag("registry.example:5000/team/app:prod")
    [dangling] = store.list_images()
    assert dangling.id == image.id and dangling.repo_tags == ()
    newer = _add(store, ["new:latest"], created="2025-01-01T00:00:00Z", content=b"b")
    assert [i.id for i in store.list_images()] == [newer.id, image.id]


def test_tag_moves_between_images(store: ImageStore) -> None:
    old = _add(store, ["app:latest"], content=b"old")
    new = _add(store, ["app:latest"], content=b"new")
    assert store.resolve("app").id == new.id
    assert store.resolve(old.id).repo_tags == ()


def test_readding_is_idempotent(store: ImageStore, tmp_path: Path) -> None:
    first = _add(store, ["a:1"])
    second = _add(store, ["a:2"])
    assert first.id == second.id and first.manifest_digest == second.manifest_digest
    assert second.repo_tags == ("a:1", "a:2")
    index = json.loads((tmp_path / "root/images/index.json").read_text())
    assert {d["digest"] for d in index["manifests"]} == {first.manifest_digest}
    assert len(store.list_images()) == 1


def test_another_process_writing_the_root_is_seen(tmp_path: Path) -> None:
    daemon_view = ImageStore(tmp_path / "root")
    assert not daemon_view.exists("late")
    cli_view = ImageStore(tmp_path / "root")
    image = _add(cli_view, ["late:latest"])
    assert daemon_view.resolve("late").id == image.id
    cli_view.untag("late")
    assert not daemon_view.exists("late")


def test_config_with_wrong_diff_ids_rejected(store: ImageStore) -> None:
    config = {**_config(), "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}
    with pytest.raises(InvalidArgument, match="diff IDs"):
        store.add_image(config, [tar_bytes(file("f"))], ["x"])
    assert not store.exists("x")


def test_layer_dirs_bottom_first_and_verified(store: ImageStore, tmp_path: Path) -> None:
    image = store.add_image(_config(), [tar_bytes(file("f", b"bottom")), tar_bytes(file("f", b"top"))], ["two"])
    dirs = store.layer_dirs(image)
    assert [(d / "f").read_bytes() for d in dirs] == [b"bottom", b"top"]
    assert [d.name for d in dirs] == [digest_hex(d) for d in image.diff_ids]
    assert store.layer_dirs(image) == dirs

    corrupt = store.add_image(_config(), [tar_bytes(file("g", b"will rot"))], ["rot"])
    blob = store.content.path(corrupt.layer_digests[0])
    blob.write_bytes(tar_bytes(file("g", b"rotten")))
    with pytest.raises(CorruptContent):
        store.layer_dirs(corrupt)
    assert not (tmp_path / "root/layers" / digest_hex(corrupt.diff_ids[0])).exists()


def test_delete_keeps_shared_content(store: ImageStore, tmp_path: Path) -> None:
    shared = tar_bytes(file("shared", b"s"))
    one = store.add_image(_config(), [shared], ["one"])
    two = store.add_image(_config(), [shared, tar_bytes(file("own", b"o"))], ["two"])
    store.layer_dirs(two)
    store.delete("two")
    assert not store.exists("two") and not store.content.has(two.manifest_digest)
    assert not store.content.has(two.layer_digests[1])
    assert store.content.has(one.layer_digests[0])
    layers = sorted(os.listdir(tmp_path / "root/layers"))
    assert layers == [digest_hex(one.diff_ids[0])]
    assert store.resolve("one") == one


def test_concurrent_adds_keep_every_tag(store: ImageStore) -> None:
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            _add(store, [f"img{n}:latest"], content=b"%d" % n)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(tag for image in store.list_images() for tag in image.repo_tags) == sorted(
        f"img{n}:latest" for n in range(8)
    )


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'

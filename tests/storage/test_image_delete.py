"""`rmi` and `image prune` rules (reactor/image_delete.py) on a real store, containers simulated.

The expected records and messages are the ones a real dockerd 20.10 gave for the same steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import Conflict, NotFound
from supervisor.reactor.image_delete import ImageDeleter, Users, is_single_reference
from supervisor.reactor.images import PruneFilter, _prune
from supervisor.storage.gc import chain_ids
from supervisor.storage.images import Image, ImageStore

from .tarbuild import file, tar_bytes

BASE = tar_bytes(file("bin/sh", b"#!" * 50))
TOP = tar_bytes(file("x", b"x\n"))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


def _config(n: int = 0, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"os": "linux", "created": f"2024-01-01T00:00:{n:02d}Z", "config": {"Labels": labels}}


def _rmi(store: ImageStore, text: str, force: bool = False, prune: bool = True, users: Users | None = None) -> Any:
    deleter = ImageDeleter(store, users or Users())
    deleter.delete(text, force=force, prune=prune)
    return deleter.outcome


def _blobs(store: ImageStore) -> set[str]:
    return {f"sha256:{p.name}" for p in store.content.path("sha256:" + "0" * 64).parent.iterdir()}


def _short(image: Image) -> str:
    return image.id[7:19]


def test_untag_then_delete_frees_blobs_and_layers(store: ImageStore) -> None:
    image = store.add_image(_config(), [BASE], ["busybox:latest"])
    store.layer_dirs(image)
    store.tag("busybox", "user/app:v1")
    outcome = _rmi(store, "user/app:v1")
    assert outcome.records == [{"Untagged": "user/app:v1"}]
    assert outcome.events == [("untag", image.id, image.id)]
    outcome = _rmi(store, "busybox")
    assert outcome.records == [
        {"Untagged": "busybox:latest"},
        {"Deleted": image.id},
        {"Deleted": image.diff_ids[0]},
    ]
    assert [e[0] for e in outcome.events] == ["untag", "delete"]
    assert outcome.reclaimed == 100
    assert _blobs(store) == set() and list(store.layers_root.iterdir()) == []


def test_delete_by_id_of_a_multiply_tagged_image_needs_force(store: ImageStore) -> None:
    image = store.add_image(_config(), [BASE, TOP], ["busybox:latest"])
    store.tag("busybox", "user/app:v1")
    with pytest.raises(Conflict) as err:
        _rmi(store, image.id[7:19])
    assert str(err.value) == (
        f"conflict: unable to delete {_short(image)} (must be forced) - image is referenced in multiple repositories"
    )
    outcome = _rmi(store, image.id[7:19], force=True)
    chains = chain_ids(image.diff_ids)
    assert outcome.records == [
        {"Untagged": "busybox:latest"},
        {"Untagged": "user/app:v1"},
        {"Deleted": image.id},
        {"Deleted": chains[1]},
        {"Deleted": chains[0]},
    ]


def test_containers_hold_their_image(store: ImageStore) -> None:
    image = store.add_image(_config(), [BASE], ["busybox:latest"])
    store.layer_dirs(image)
    stopped = Users({image.id: [("c" * 64, False)]})
    with pytest.raises(Conflict) as err:
        _rmi(store, "busybox", users=stopped)
    assert str(err.value) == (
        'conflict: unable to remove repository reference "busybox" (must force) - '
        f"container cccccccccccc is using its referenced image {_short(image)}"
    )
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is being used by stopped container cccccccccccc"):
        _rmi(store, image.id, users=stopped)
    # Another tag: the reference goes without force (the image keeps one).
    store.tag("busybox", "other:1")
    assert _rmi(store, "other:1", users=stopped).records == [{"Untagged": "other:1"}]
    # Forced by ID: the image goes, its content stays for the container (no layer record, as Docker).
    outcome = _rmi(store, image.id, force=True, users=stopped)
    assert outcome.records == [{"Untagged": "busybox:latest"}, {"Deleted": image.id}]
    assert not store.exists(image.id) and store.container_image(image.id).id == image.id
    assert store.container_layers(image.id)[0].is_dir()


def test_running_containers_are_hard_conflicts(store: ImageStore) -> None:
    image = store.add_image(_config(), [BASE], ["busybox:latest"])
    running = Users({image.id: [("r" * 64, True)]})
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running container rrrrrrrrrrrr"):
        _rmi(store, image.id, force=True, users=running)
    # By reference with force: untagged, the image stays (dangling), quietly.
    assert _rmi(store, "busybox", force=True, users=running).records == [{"Untagged": "busybox:latest"}]
    assert store.resolve(image.id).repo_tags == ()


def test_parents_and_children(store: ImageStore) -> None:
    base = store.add_image(_config(1), [BASE], ["base:1"])
    child = store.add_image(_config(2), [BASE, TOP], ["child:1"], parent=base.id)
    for force in (False, True):
        with pytest.raises(Conflict) as err:
            _rmi(store, base.id, force=force)
        assert str(err.value) == (
            f"conflict: unable to delete {_short(base)} (cannot be forced) - image has dependent child images"
        )
    # Untagging the parent leaves it as an intermediate image; deleting the child prunes it too.
    assert _rmi(store, "base:1").records == [{"Untagged": "base:1"}]
    assert store.exists(base.id)
    outcome = _rmi(store, "child:1")
    assert outcome.records == [
        {"Untagged": "child:1"},
        {"Deleted": child.id},
        {"Deleted": chain_ids(child.diff_ids)[1]},
        {"Deleted": base.id},
        {"Deleted": base.diff_ids[0]},
    ]
    assert _blobs(store) == set()


def test_noprune_keeps_the_untagged_parent(store: ImageStore) -> None:
    base = store.add_image(_config(1), [BASE], [])
    store.add_image(_config(2), [BASE, TOP], ["child:1"], parent=base.id)
    _rmi(store, "child:1", prune=False)
    assert store.exists(base.id)


def test_digest_references_go_with_the_last_tag_of_their_repository(store: ImageStore) -> None:
    image = store.add_image(_config(), [BASE], ["app:v1"])
    with store.layout.edit() as state:
        state.refs[f"app@{image.manifest_digest}"] = image.manifest_digest
    assert store.resolve(f"app@{image.manifest_digest}").id == image.id
    outcome = _rmi(store, "app:v1")
    assert outcome.records[:2] == [{"Untagged": "app:v1"}, {"Untagged": f"app@{image.manifest_digest}"}]
    assert {"Deleted": image.id} in outcome.records


def test_single_reference() -> None:
    digest = "sha256:" + "a" * 64
    assert not is_single_reference([])
    assert is_single_reference(["a:1"])
    assert not is_single_reference(["a:1", "b:1"])
    assert is_single_reference(["a:1", f"a@{digest}"])
    assert not is_single_reference(["a:1", f"b@{digest}"])


def test_unknown_images(store: ImageStore) -> None:
    with pytest.raises(NotFound, match="^No such image: nosuch:tag$"):
        _rmi(store, "nosuch:tag")


def test_prune_dangling_then_all_unused(store: ImageStore) -> None:
    kept = store.add_image(_config(1), [BASE], ["busybox:latest"])
    used = store.add_image(_config(2), [TOP], ["used:1"])
    dangling = store.add_image(_config(3), [BASE, tar_bytes(file("d", b"dd"))], [])
    labelled = store.add_image(_config(4, {"tier": "web"}), [tar_bytes(file("w"))], [])
    users = Users({used.id: [("u" * 64, False)]})

    deleter = ImageDeleter(store, users)
    _prune(deleter, PruneFilter(labels=("tier=web",)))
    assert [r for r in deleter.outcome.records if r.get("Deleted", "").startswith("sha256:")][0] == {
        "Deleted": labelled.id
    }
    deleter = ImageDeleter(store, users)
    _prune(deleter, PruneFilter())
    assert deleter.outcome.records == [{"Deleted": dangling.id}, {"Deleted": chain_ids(dangling.diff_ids)[1]}]
    assert deleter.outcome.reclaimed == 2
    deleter = ImageDeleter(store, users)
    _prune(deleter, PruneFilter(dangling_only=False, until_ns=0))
    assert deleter.outcome.records == []  # all created after `until`
    deleter = ImageDeleter(store, users)
    _prune(deleter, PruneFilter(dangling_only=False))
    assert deleter.outcome.records == [
        {"Untagged": "busybox:latest"},
        {"Deleted": kept.id},
        {"Deleted": kept.diff_ids[0]},
    ]
    assert [image.id for image in store.list_images()] == [used.id]

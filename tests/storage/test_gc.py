"""Garbage collection of the image store: what it frees, what it keeps, and crash safety (done-when 6)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.storage import gc
from supervisor.storage.digest import digest_hex
from supervisor.storage.images import Image, ImageStore
from supervisor.storage.layers import layer_dir

from .tarbuild import file, tar_bytes

LAYERS = {name: tar_bytes(file(f"{name}/data", name.encode() * 3), file(f"{name}/x", b"x")) for name in "ABCDE"}


def _config(n: int = 0) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux", "created": f"2024-01-01T00:00:{n:02d}Z", "config": {}}


def _blobs(store: ImageStore) -> set[str]:
    return {f"sha256:{p.name}" for p in store.content.path("sha256:" + "0" * 64).parent.iterdir()}


def _layer_dirs(store: ImageStore) -> set[str]:
    return {p.name for p in store.layers_root.iterdir()}


def _content(image: Image) -> set[str]:
    return {image.manifest_digest, image.id, *image.layer_digests}


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


def test_collect_frees_only_what_nothing_uses(store: ImageStore) -> None:
    one = store.add_image(_config(1), [LAYERS["A"], LAYERS["B"]], ["one:1"])
    two = store.add_image(_config(2), [LAYERS["A"], LAYERS["C"]], ["two:1"])
    store.layer_dirs(one), store.layer_dirs(two)
    assert gc.collect(store).blobs == ()
    store.remove_image(two.id)
    assert _content(two) <= _blobs(store)  # removing only edits the tables
    collected = gc.collect(store)
    assert set(collected.blobs) == {two.manifest_digest, two.id, two.layer_digests[1]}
    assert collected.layers == (two.diff_ids[1],)
    assert _blobs(store) == _content(one)
    assert _layer_dirs(store) == {digest_hex(d) for d in one.diff_ids}
    assert store.resolve("one:1") == one


def test_container_images_keep_their_content_while_held(store: ImageStore) -> None:
    image = store.add_image(_config(), [LAYERS["A"]], ["used:1"])
    store.layer_dirs(image)
    store.remove_image(image.id, hold=True)
    gc.collect(store, keep_image_ids={image.id})
    assert _content(image) <= _blobs(store) and not store.exists("used:1")
    assert store.container_image(image.id).id == image.id
    assert store.container_layers(image.id) == [layer_dir(store.layers_root, image.diff_ids[0])]
    # The container went: the held image goes with the next collection.
    gc.collect(store)
    assert _blobs(store) == set() and _layer_dirs(store) == set()
    assert store.layout.read_held() == {}


def test_a_kept_image_id_alone_keeps_config_and_layer_dirs(store: ImageStore) -> None:
    image = store.add_image(_config(), [LAYERS["A"]], ["x:1"])
    store.layer_dirs(image)
    store.remove_image(image.id)
    gc.collect(store, keep_image_ids={image.id, "not-a-digest"})
    assert _blobs(store) == {image.id}
    assert store.container_layers(image.id)[0].is_dir()


def test_young_orphans_wait_for_the_grace_period(store: ImageStore) -> None:
    orphan = store.content.put(b"a blob some writer is about to reference")
    assert gc.collect(store, grace_seconds=3600).blobs == ()
    assert gc.collect(store, expected={orphan}, grace_seconds=3600).blobs == (orphan,)


def test_incomplete_marking_sweeps_nothing(store: ImageStore) -> None:
    image = store.add_image(_config(), [LAYERS["A"]], ["x:1"])
    orphan = store.content.put(b"orphan")
    os.unlink(store.content.path(image.id))
    collected = gc.collect(store)
    assert not collected.complete and store.content.has(orphan)


def test_recover_removes_crash_leftovers(store: ImageStore) -> None:
    image = store.add_image(_config(), [LAYERS["A"]], ["x:1"])
    store.layer_dirs(image)
    images = store.content.root
    (images / "ingest" / "blob-partial").write_bytes(b"half")
    (images / ".index.json.abc.tmp").write_text("{")
    half = store.layers_root / ".tmp-0123456789ab-xyz"
    (half / "d").mkdir(parents=True)
    (half / "d" / "f").write_text("x")
    (store.layers_root / f".tmp-deleted-{'e' * 64}-1").mkdir()
    orphan_dir = store.layers_root / ("f" * 64)
    orphan_dir.mkdir()
    orphan = store.content.put(b"orphan")
    collected = gc.recover(store)
    assert collected.blobs == (orphan,) and collected.layers == ("sha256:" + "f" * 64,)
    assert list((images / "ingest").iterdir()) == []
    assert not list(images.glob(".*.tmp"))
    assert _layer_dirs(store) == {digest_hex(image.diff_ids[0])}
    assert store.resolve("x:1") == image


def test_image_index_entries_keep_what_they_list(store: ImageStore) -> None:
    image = store.add_image(_config(), [LAYERS["A"]], [])
    index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": image.manifest_digest, "size": 1}]}).encode()
    index_digest = store.content.put(index)
    with store.layout.edit() as state:
        state.refs["multi:1"] = index_digest
        del state.manifests[image.manifest_digest]
    assert gc.collect(store).blobs == ()


def test_chain_ids() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert gc.chain_ids([a]) == [a]
    assert gc.chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


# -- concurrency ----------------------------------------------------------------


def _add_same_layer(root: str, tag: str) -> None:
    ImageStore(Path(root)).add_image(_config(), [LAYERS["A"]], [tag])


def test_concurrent_processes_adding_the_same_blobs(store: ImageStore) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_same_layer, args=(str(store.root), f"p{n}:latest")) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0] * 6
    [image] = store.list_images()
    assert sorted(image.repo_tags) == sorted(f"p{n}:latest" for n in range(6))
    for digest in _blobs(store):
        store.content.get(digest)  # verifies
    assert list((store.content.root / "ingest").iterdir()) == []


def test_collection_racing_adds_and_deletes(store: ImageStore) -> None:
    keeper = store.add_image(_config(), [LAYERS["A"]], ["keeper:1"])
    stop = time.monotonic() + 2
    errors: list[BaseException] = []

    def churn(own: str) -> None:
        # Each thread its own image; every one shares layer A with the keeper.
        try:
            while time.monotonic() < stop:
                image = store.add_image(_config(1), [LAYERS["A"], LAYERS[own]], [f"churn-{own.lower()}:1"])
                assert [d.is_dir() for d in store.layer_dirs(image)] == [True, True]
                store.delete(f"churn-{own.lower()}:1")
        except BaseException as err:  # surfaced below
            errors.append(err)

    def collect() -> None:
        try:
            while time.monotonic() < stop:
                gc.collect(store)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=churn, args=(own,)) for own in "BC"] + [threading.Thread(target=collect)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    gc.collect(store)
    assert _blobs(store) == _content(keeper)
    assert _layer_dirs(store) == set() or _layer_dirs(store) == {digest_hex(keeper.diff_ids[0])}
    assert store.resolve("keeper:1") == keeper


# -- crash safety -----------------------------------------------------------------

# Every call that changes the file system (and fsync, the points between writes): the child is
# SIGKILLed just before the Nth one, for every N until the scenario runs through.
_MUTATIONS = ("open", "rename", "replace", "unlink", "rmdir", "mkdir", "fsync", "link", "symlink", "chmod")


def _kill_before_call(n: int) -> None:
    count = 0

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if count == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return wrapper

    for name in _MUTATIONS:
        setattr(os, name, wrap(getattr(os, name)))


def _scenario(root: Path) -> None:
    """What a daemon does to the store: rmi (untag + delete + GC), prune, commit-like add + unpack, restart."""
    store = ImageStore(root)
    store.delete("b:1")
    dangling = store.resolve("c-dangling")
    store.untag("c-dangling")
    store.remove_image(dangling.id)
    gc.collect(store)
    store.layer_dirs(store.add_image(_config(4), [LAYERS["A"], LAYERS["E"]], ["d:1"]))
    gc.recover(store)


def _run_killed_at(root: Path, n: int) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            _kill_before_call(n)
            _scenario(root)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _expected_files(layer: bytes) -> set[str]:
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as archive:
        return {m.name for m in archive.getmembers() if m.isfile()}


def _check_consistent(root: Path, template: dict[str, Image], files_by_diff: dict[str, set[str]]) -> set[str]:
    """The store as a restarted daemon sees it: whole images only, nothing torn. Returns the tags present."""
    store = ImageStore(root)
    listed = store.list_images()
    for image in listed:  # before recovery too: every listed image is whole
        for digest in _content(image):
            store.content.get(digest)
    gc.recover(store)
    present = set()
    referenced: set[str] = set()
    for image in store.list_images():
        tags = set(image.repo_tags)
        present |= tags
        if "a:1" in tags or "b:1" in tags:
            assert image == template[next(iter(tags))], tags
        referenced |= _content(image)
        for digest in _content(image):
            store.content.get(digest)
        for diff_id, directory in zip(image.diff_ids, store.layer_dirs(image), strict=True):
            found = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
            assert found == files_by_diff[diff_id], (diff_id, found)
    assert "a:1" in present
    assert _blobs(store) == referenced  # nothing left over after recovery...
    assert not [p for p in store.layers_root.iterdir() if p.name.startswith(".tmp-")]
    assert list((store.content.root / "ingest").iterdir()) == []
    return present


def test_killed_at_every_step_leaves_a_consistent_store(tmp_path: Path) -> None:
    template_root = tmp_path / "template"
    store = ImageStore(template_root)
    images = {
        "a:1": store.add_image(_config(1), [LAYERS["A"], LAYERS["B"]], ["a:1"]),
        "b:1": store.add_image(_config(2), [LAYERS["A"], LAYERS["C"]], ["b:1"]),
    }
    store.add_image(_config(3), [LAYERS["D"]], ["c-dangling"])
    for image in store.list_images():
        store.layer_dirs(image)
    probe = ImageStore(tmp_path / "probe")
    files_by_diff = {
        probe.add_image(_config(), [layer], []).diff_ids[0]: _expected_files(layer) for layer in LAYERS.values()
    }
    outcomes: dict[str, int] = {}
    n = 0
    while True:
        n += 1
        root = tmp_path / f"run-{n}"
        shutil.copytree(template_root, root, symlinks=True)
        code = _run_killed_at(root, n)
        assert code in (0, -signal.SIGKILL), f"the scenario failed (exit {code}) when killed at step {n}"
        present = ",".join(sorted(_check_consistent(root, images, files_by_diff)))
        outcomes[present] = outcomes.get(present, 0) + 1
        shutil.rmtree(root)
        if code == 0:
            break
        assert n < 2000, "the scenario never ran through"
    assert n > 50, f"only {n} kill points: the hook is not counting"
    # The kills hit every stage: before b went, after it went, with d added.
    assert {"a:1,b:1,c-dangling:latest", "a:1,c-dangling:latest", "a:1", "a:1,d:1"} <= set(outcomes), outcomes

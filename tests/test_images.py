"""Image management through the docker CLI, the corral CLI and the API (done-when 1, 2 and 6).

Expected outputs and messages are the ones a real dockerd 20.10 gave for the same steps
(same busybox layer, imported there).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DOCKER, Daemon, bootstrap, wait_for

from supervisor.storage.digest import digest_hex
from supervisor.storage.images import ImageStore

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

# `docker image inspect` keys, in dockerd 20.10's order.
INSPECT_KEYS = [
    "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container", "ContainerConfig",
    "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver",
    "RootFS", "Metadata",
]  # fmt: skip
CONFIG_KEYS = [
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
    "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels",
]  # fmt: skip
LIST_KEYS = [
    "Containers", "Created", "Id", "Labels", "ParentId", "RepoDigests", "RepoTags", "SharedSize", "Size",
    "VirtualSize",
]  # fmt: skip


@pytest.fixture
def images(clean: Daemon) -> Iterator[Daemon]:
    """The module's daemon; afterwards back to busybox:latest alone (re-bootstrapped if a test removed it)."""
    yield clean
    clean.remove_all()
    for image in clean.api("GET", "/images/json", query={"all": True}).json():
        tags = image["RepoTags"] or []
        if "busybox:latest" not in tags:
            clean.api("DELETE", f"/images/{image['Id']}", query={"force": True})
        for tag in set(tags) - {"busybox:latest"}:
            clean.api("DELETE", f"/images/{tag}")
    bootstrap(clean.root)


def _busybox(daemon: Daemon) -> ImageStore:
    return ImageStore(daemon.root)


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _blobs(daemon: Daemon) -> set[str]:
    return {p.name for p in (daemon.root / "images/blobs/sha256").iterdir()}


def _layers(daemon: Daemon) -> set[str]:
    return {p.name for p in (daemon.root / "layers").iterdir()}


def _content_size(store: ImageStore, layer_digest: str) -> int:
    """Docker's layer size, computed independently: regular file bytes plus symlink target lengths."""
    data = gzip.decompress(store.content.path(layer_digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return sum(m.size if m.isreg() else len(m.linkname) if m.issym() else 0 for m in archive)


def test_tag_untag_and_delete_frees_content(images: Daemon) -> None:
    busybox = _busybox(images).resolve("busybox")
    _ok(images.docker("tag", "busybox", "user/app:v1"))
    listing = _ok(images.docker("images")).splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[:3] for line in listing[1:]) == [
        ["busybox", "latest", busybox.short_id],
        ["user/app", "v1", busybox.short_id],
    ]
    # Removing one of two tags only untags.
    assert _ok(images.docker("rmi", "user/app:v1")) == "Untagged: user/app:v1\n"
    assert _busybox(images).resolve("busybox").repo_tags == ("busybox:latest",)
    # By ID while two repositories name it: only with -f.
    _ok(images.docker("tag", "busybox", "user/app:v1"))
    refused = images.docker("rmi", busybox.short_id)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"Error response from daemon: conflict: unable to delete {busybox.short_id} (must be forced) - "
        "image is referenced in multiple repositories\n"
    )
    images.docker("run", "--rm", "busybox", "true")  # unpacked, so there is a layer dir to free
    assert digest_hex(busybox.diff_ids[0]) in _layers(images)
    deleted = _ok(images.docker("rmi", "-f", busybox.short_id))
    assert deleted == (
        f"Untagged: busybox:latest\nUntagged: user/app:v1\nDeleted: {busybox.id}\nDeleted: {busybox.diff_ids[0]}\n"
    )
    assert _ok(images.docker("images", "-a", "-q")) == ""
    assert _blobs(images) == set() and _layers(images) == set()
    missing = images.docker("run", "--rm", "--pull", "never", "busybox", "true")
    assert missing.returncode == 125


def test_deleting_an_image_keeps_layers_another_shares(images: Daemon) -> None:
    store = _busybox(images)
    busybox = store.resolve("busybox")
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w") as archive:
        info = tarfile.TarInfo("hello")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"hi\n"))
    config = {key: value for key, value in busybox.config.items() if key != "rootfs"}
    config["history"] = [*busybox.config["history"], {"created_by": "add hello"}]
    layers = [store.content.path(busybox.layer_digests[0]), top.getvalue()]
    two = store.add_image(config, layers, ["two:1"], parent=busybox.id)
    assert _ok(images.docker("run", "--rm", "two:1", "cat", "/hello")) == "hi\n"
    history = images.api("GET", "/images/two:1/history").json()
    assert [(h["Id"], h["CreatedBy"], h["Size"], h["Tags"]) for h in history] == [
        (two.id, "add hello", 3, ["two:1"]),
        (busybox.id, busybox.config["history"][0]["created_by"], busybox.size, ["busybox:latest"]),
    ]
    rows = _ok(images.docker("history", "two:1")).splitlines()
    assert [row.split()[0] for row in rows[1:]] == [two.short_id, busybox.short_id]
    assert rows[1].split()[-1] == "3B"
    refused = images.docker("rmi", "-f", busybox.id)
    assert "(cannot be forced) - image has dependent child images" in refused.stderr
    deleted = _ok(images.docker("rmi", "two:1"))
    top_chain = "sha256:" + hashlib.sha256(f"{two.diff_ids[0]} {two.diff_ids[1]}".encode()).hexdigest()
    assert deleted == f"Untagged: two:1\nDeleted: {two.id}\nDeleted: {top_chain}\n"
    assert _layers(images) == {digest_hex(busybox.diff_ids[0])}
    assert _busybox(images).resolve("busybox") == busybox


def test_rmi_refused_while_containers_use_the_image(images: Daemon) -> None:
    busybox = _busybox(images).resolve("busybox")
    stopped = _ok(images.docker("create", "--name", "stopped1", "busybox", "echo", "still here")).strip()
    refused = images.docker("rmi", "busybox")
    assert refused.stderr == (
        'Error response from daemon: conflict: unable to remove repository reference "busybox" (must force) - '
        f"container {stopped[:12]} is using its referenced image {busybox.short_id}\n"
    )
    refused = images.docker("rmi", busybox.short_id)
    assert refused.stderr.endswith(f"(must be forced) - image is being used by stopped container {stopped[:12]}\n")
    running = _ok(images.docker("run", "-d", "busybox", "sleep", "30")).strip()
    refused = images.docker("rmi", "-f", busybox.short_id)
    assert refused.stderr == (
        f"Error response from daemon: conflict: unable to delete {busybox.short_id} (cannot be forced) - "
        f"image is being used by running container {running[:12]}\n"
    )
    # Forced by reference: untagged only, the image stays (dangling) and the containers are untouched.
    assert _ok(images.docker("rmi", "-f", "busybox")) == "Untagged: busybox:latest\n"
    dangling = images.api("GET", "/images/json", query={"filters": {"dangling": ["true"]}}).json()
    assert [(i["Id"], i["RepoTags"]) for i in dangling] == [(busybox.id, ["<none>:<none>"])]
    assert images.inspect(running)["State"]["Running"] is True


def test_forced_delete_keeps_a_stopped_containers_image_until_it_goes(images: Daemon) -> None:
    busybox = _busybox(images).resolve("busybox")
    _ok(images.docker("run", "--name", "keeper", "busybox", "echo", "first"))
    deleted = _ok(images.docker("rmi", "-f", busybox.short_id))
    # As Docker: the image is gone, its layers stay with the container (no layer in the records).
    assert deleted == f"Untagged: busybox:latest\nDeleted: {busybox.id}\n"
    assert _ok(images.docker("images", "-a", "-q")) == ""
    assert _ok(images.docker("start", "-a", "keeper")) == "first\n"
    assert images.inspect("keeper")["Image"] == busybox.id
    assert digest_hex(busybox.diff_ids[0]) in _layers(images)
    _ok(images.docker("rm", "keeper"))
    wait_for(lambda: not _layers(images) and not _blobs(images))


def test_images_flags_and_filters(images: Daemon) -> None:
    store = _busybox(images)
    busybox = store.resolve("busybox")
    _ok(images.docker("tag", "busybox", "user/app:v1"))
    _ok(images.docker("tag", "busybox", "localhost:5000/user/app"))
    labelled = store.add_image(
        {**busybox.config, "config": {"Labels": {"tier": "web"}}, "created": "2020-01-01T00:00:00Z"},
        [store.content.path(busybox.layer_digests[0])],
        [],
    )
    rows = _ok(images.docker("images")).splitlines()[1:]
    # The docker CLI groups one image's tags by repository in a Go map: their order varies.
    assert sorted(row.split()[0] for row in rows[:3]) == ["busybox", "localhost:5000/user/app", "user/app"]
    assert rows[3].split()[:3] == ["<none>", "<none>", labelled.short_id]
    assert rows[0].split()[-1] == "1.98MB"
    assert _ok(images.docker("images", "-q")).split() == [busybox.short_id] * 3 + [labelled.short_id]
    assert _ok(images.docker("images", "-q", "--no-trunc", "-f", "dangling=true")).split() == [labelled.id]
    assert _ok(images.docker("images", "-q", "-f", "label=tier=web")).split() == [labelled.short_id]
    assert _ok(images.docker("images", "-q", "-f", f"before={busybox.short_id}")).split() == [labelled.short_id]
    assert _ok(images.docker("images", "user/*")).splitlines()[1].split()[:2] == ["user/app", "v1"]
    assert [r.split()[0] for r in _ok(images.docker("images", "*/app")).splitlines()[1:]] == ["user/app"]
    assert len(_ok(images.docker("images", "--filter", "reference=busybox")).splitlines()) == 2
    assert _ok(images.docker("images", "--digests")).splitlines()[0].split()[2] == "DIGEST"
    listed = images.api("GET", "/images/json").json()
    assert [list(image) for image in listed] == [LIST_KEYS, LIST_KEYS]
    assert listed[0]["RepoTags"] == ["busybox:latest", "user/app:v1", "localhost:5000/user/app:latest"]
    assert listed[0]["RepoDigests"] is None and listed[1]["RepoDigests"] == ["<none>@<none>"]
    bad = images.api("GET", "/images/json", query={"filters": {"foo": ["x"]}})
    assert (bad.status, bad.message) == (400, "Invalid filter 'foo'")
    bad = images.api("GET", "/images/json", query={"filters": {"dangling": ["xyz"]}})
    assert (bad.status, bad.message) == (400, "Invalid filter 'dangling=[xyz]'")


def test_image_inspect_has_dockers_fields(images: Daemon) -> None:
    store = _busybox(images)
    busybox = store.resolve("busybox")
    [inspect] = json.loads(_ok(images.docker("image", "inspect", "busybox")))
    assert list(inspect) == INSPECT_KEYS
    assert list(inspect["Config"]) == CONFIG_KEYS and list(inspect["ContainerConfig"]) == CONFIG_KEYS
    assert inspect["Id"] == busybox.id and inspect["RepoTags"] == ["busybox:latest"] and inspect["RepoDigests"] == []
    assert inspect["Parent"] == "" and inspect["Config"]["Cmd"] == ["sh"] and inspect["ContainerConfig"]["Cmd"] is None
    assert inspect["RootFS"] == {"Type": "layers", "Layers": list(busybox.diff_ids)}
    # The same layer imported into a real dockerd 20.10 reports this size: the unpacked file bytes.
    assert inspect["Size"] == inspect["VirtualSize"] == _content_size(store, busybox.layer_digests[0])
    assert inspect["GraphDriver"]["Data"]["UpperDir"] == str(images.root / "layers" / digest_hex(busybox.diff_ids[0]))
    assert inspect["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    by_prefix = json.loads(_ok(images.docker("image", "inspect", busybox.short_id[:5])))[0]
    assert by_prefix["Id"] == busybox.id
    missing = images.docker("image", "inspect", "nosuch")
    assert missing.returncode == 1 and "No such image: nosuch:latest" in missing.stderr


def test_history(images: Daemon) -> None:
    busybox = _busybox(images).resolve("busybox")
    rows = _ok(images.docker("history", "busybox")).splitlines()
    assert rows[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert rows[1].startswith(busybox.short_id) and "1.98MB" in rows[1]
    api = images.api("GET", "/images/busybox/history").json()
    assert api == [
        {
            "Comment": "",
            "Created": api[0]["Created"],
            "CreatedBy": busybox.config["history"][0]["created_by"],
            "Id": busybox.id,
            "Size": busybox.size,
            "Tags": ["busybox:latest"],
        }
    ]
    corral = _ok(images.corral("history", "--no-trunc", "busybox")).splitlines()
    assert corral[1].startswith(busybox.id) and "corral image bootstrap (busybox-static" in corral[1]
    missing = images.api("GET", "/images/nosuch/history")
    assert (missing.status, missing.message) == (404, "No such image: nosuch:latest")


def test_image_prune_and_events(images: Daemon) -> None:
    store = _busybox(images)
    busybox = store.resolve("busybox")
    since = time.time()
    own = io.BytesIO()
    with tarfile.open(fileobj=own, mode="w") as archive:
        info = tarfile.TarInfo("own")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"12345"))
    config = {key: value for key, value in busybox.config.items() if key != "rootfs"}
    dangling = store.add_image({**config, "created": "2021-01-01T00:00:00Z"}, [own.getvalue()], [])
    _ok(images.docker("tag", "busybox", "extra:1"))
    pruned = _ok(images.docker("image", "prune", "-f"))
    assert pruned == (
        f"Deleted Images:\ndeleted: {dangling.id}\ndeleted: {dangling.diff_ids[0]}\n\nTotal reclaimed space: 5B\n"
    )
    assert _ok(images.docker("image", "prune", "-f")) == "Total reclaimed space: 0B\n"
    assert _ok(images.docker("rmi", "extra:1")) == "Untagged: extra:1\n"
    _ok(images.docker("create", "busybox", "true"))  # in use: `prune -a` keeps it
    assert _ok(images.docker("image", "prune", "-a", "-f")) == "Total reclaimed space: 0B\n"
    assert _busybox(images).resolve("busybox").repo_tags == ("busybox:latest",)
    until = str(time.time() + 1)
    events = _ok(images.docker("events", "--since", str(since), "--until", until, "-f", "type=image"))
    assert [line.split(" ", 1)[1] for line in events.splitlines()] == [
        f"image tag {busybox.id} (name=extra:1)",
        f"image delete {dangling.id} (name={dangling.id})",
        "image prune  (reclaimed=5)",
        "image prune  (reclaimed=0)",
        f"image untag {busybox.id} (name={busybox.id})",
        "image prune  (reclaimed=0)",
    ]


def test_tag_errors(images: Daemon) -> None:
    missing = images.docker("tag", "nosuch", "x:y")
    assert missing.stderr == "Error response from daemon: No such image: nosuch:latest\n"
    bad = images.api("POST", "/images/busybox/tag", query={"repo": "c@sha256:" + "a" * 64})
    assert (bad.status, bad.message) == (400, "refusing to create a tag with a digest reference")
    bad = images.api("POST", "/images/busybox/tag", query={"repo": "C"})
    assert bad.status == 400 and "must be lowercase" in bad.message
    ok = images.api("POST", "/images/busybox/tag", query={"repo": "c"})
    assert ok.status == 201
    assert images.api("DELETE", "/images/c").json() == [{"Untagged": "c:latest"}]
    nosuch = images.api("DELETE", "/images/abcdef")
    assert (nosuch.status, nosuch.message) == (404, "No such image: abcdef:latest")


def test_corral_cli_image_commands(images: Daemon) -> None:
    busybox = _busybox(images).resolve("busybox")
    _ok(images.corral("tag", "busybox", "host:5000/team/app:v2"))
    rows = _ok(images.corral("images")).splitlines()
    assert rows[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [row.split()[:3] for row in rows[1:]] == [
        ["busybox", "latest", busybox.short_id],
        ["host:5000/team/app", "v2", busybox.short_id],
    ]
    assert _ok(images.corral("image", "ls", "-q", "host:5000/*/*")).split() == [busybox.short_id]
    [inspect] = json.loads(_ok(images.corral("image", "inspect", "host:5000/team/app:v2")))
    assert inspect["Id"] == busybox.id and list(inspect) == INSPECT_KEYS
    assert _ok(images.corral("rmi", "host:5000/team/app:v2")) == "Untagged: host:5000/team/app:v2\n"
    failed = images.corral("image", "rm", "nosuch")
    assert failed.returncode == 1 and failed.stderr == "Error response from daemon: No such image: nosuch:latest\n"
    assert _ok(images.corral("image", "prune", "-f")) == "Total reclaimed space: 0B\n"
    assert _ok(images.corral("image", "history", "-q", "busybox")).split() == [busybox.short_id]


def test_ambiguous_container_prefix_is_reported(images: Daemon) -> None:
    by_first: dict[str, str] = {}
    for _ in range(17):  # 17 IDs over 16 hex digits: two share their first one
        container_id = _ok(images.docker("create", "busybox", "true")).strip()
        if container_id[0] in by_first:
            break
        by_first[container_id[0]] = container_id
    result = images.docker("rm", container_id[0])
    assert result.stderr == f"Error response from daemon: Multiple IDs found with provided prefix: {container_id[0]}\n"
    assert _ok(images.docker("rm", container_id[:12])).strip() == container_id[:12]


def test_restarted_daemon_cleans_what_a_crash_left(fresh_daemon: Daemon) -> None:
    store = ImageStore(fresh_daemon.root)
    busybox = store.resolve("busybox")
    _ok(fresh_daemon.docker("run", "--rm", "busybox", "true"))
    fresh_daemon.kill9()
    # What a kill in the middle of a pull, a commit, an unpack or a GC leaves behind.
    images = fresh_daemon.root / "images"
    (images / "ingest" / "blob-0123").write_bytes(b"partial")
    (images / ".index.json.0123.tmp").write_text('{"half":')
    orphan = store.content.put(b"a blob no manifest names")
    half_unpacked = fresh_daemon.root / "layers" / ".tmp-0123456789ab-x"
    (half_unpacked / "etc").mkdir(parents=True)
    half_removed = fresh_daemon.root / "layers" / f".tmp-deleted-{'a' * 64}-1"
    (half_removed / "bin").mkdir(parents=True)
    orphan_layer = fresh_daemon.root / "layers" / ("b" * 64)
    orphan_layer.mkdir()
    fresh_daemon.start()
    assert os.listdir(images / "ingest") == []
    assert not (images / ".index.json.0123.tmp").exists() and not store.content.has(orphan)
    assert _layers(fresh_daemon) == {digest_hex(busybox.diff_ids[0])}
    assert _ok(fresh_daemon.docker("run", "--rm", "busybox", "echo", "ok")) == "ok\n"
    for digest in _blobs(fresh_daemon):
        store.content.get(f"sha256:{digest}")  # every blob left verifies
    assert Path(fresh_daemon.log_path).read_text().count("images.recovered") == 1

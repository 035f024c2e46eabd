"""save/load at the storage level: archive formats, verification, hostile input, crash safety."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidArgument, NotFound
from supervisor.storage import archive_load
from supervisor.storage.archive_load import load_archive
from supervisor.storage.archive_save import SaveSession, select_images
from supervisor.storage.archive_staging import STAGING_DIR, sweep_stale
from supervisor.storage.images import Image, ImageStore, canonical_json

from .tarbuild import device, file, symlink, tar_bytes

ARCH_CONFIG = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z"}


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "src")


@pytest.fixture
def target(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "dst")


def _add(store: ImageStore, tags: list[str], marker: bytes = b"1") -> Image:
    bottom = tar_bytes(file("bin/tool", b"#!/bin/sh\n" + marker, mode=0o755))  # gzip
    top = tar_bytes(file("etc/motd", b"hello " + marker), gzipped=False)  # plain
    config = {**ARCH_CONFIG, "config": {"Cmd": ["sh"], "Env": ["A=1"]}}
    return store.add_image(config, [bottom, top], tags)


def _save(store: ImageStore, names: list[str], fmt: str = "docker") -> bytes:
    return b"".join(SaveSession(store, select_images(store, names), fmt).chunks())


def _members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def _read(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def _load(store: ImageStore, data: bytes) -> list[archive_load.LoadedImage]:
    return load_archive(store, io.BytesIO(data))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(entries: dict[str, bytes]) -> bytes:
    return tar_bytes(*(file(name, data) for name, data in entries.items()), gzipped=False)


def _docker_archive(config: bytes, layers: list[bytes], tags: list[str] | None = None, **extra: bytes) -> bytes:
    entries = {f"{_sha(config)[7:]}.json": config}
    names = []
    for number, layer in enumerate(layers):
        entries[f"l{number}/layer.tar"] = layer
        names.append(f"l{number}/layer.tar")
    manifest = [{"Config": f"{_sha(config)[7:]}.json", "RepoTags": tags or [], "Layers": names}]
    entries["manifest.json"] = json.dumps(manifest).encode()
    entries.update(extra)
    return _tar(entries)


def _valid_parts() -> tuple[bytes, bytes]:
    layer = tar_bytes(file("x", b"data"), gzipped=False)
    config = json.dumps({**ARCH_CONFIG, "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]}}).encode()
    return config, layer


def _fingerprint(store: ImageStore) -> dict[str, bytes]:
    """Everything a load may write: the tables and the blobs (names and bytes)."""
    root = store.root / "images"
    found = {name: (root / name).read_bytes() for name in ("index.json",) if (root / name).exists()}
    found["refs"] = json.dumps(store.layout.read_refs()).encode()
    for blob in sorted((root / "blobs/sha256").iterdir()):
        found[blob.name] = blob.read_bytes()
    return found


def _assert_store_sound(store: ImageStore) -> None:
    """Every blob hashes to its name; every listed image has all its blobs, verified."""
    for blob in (store.root / "images/blobs/sha256").iterdir():
        assert _sha(blob.read_bytes()) == f"sha256:{blob.name}", f"blob {blob.name} fails verification"
    for image in store.list_images():
        for digest in (image.manifest_digest, image.id, *image.layer_digests):
            assert store.content.has(digest), f"image {image.id} lacks blob {digest}"


# -- save ------------------------------------------------------------------------


def test_docker_archive_has_docker_20_10_layout(store: ImageStore) -> None:
    image = _add(store, ["app:v1"])
    archive = _save(store, ["app:v1"])
    members = _members(archive)
    [entry] = json.loads(_read(archive, "manifest.json"))
    assert entry["Config"] == f"{image.id[7:]}.json" and entry["RepoTags"] == ["app:v1"]
    assert _read(archive, entry["Config"]) == store.content.get(image.id)  # byte for byte: the ID survives
    assert len(entry["Layers"]) == 2
    for path, diff_id in zip(entry["Layers"], image.diff_ids, strict=True):
        assert path.endswith("/layer.tar")
        assert _sha(_read(archive, path)) == diff_id  # uncompressed, as Docker writes layer.tar
        layer_dir = path.rsplit("/", 1)[0]
        assert _read(archive, f"{layer_dir}/VERSION") == b"1.0"
        assert json.loads(_read(archive, f"{layer_dir}/json"))["id"] == layer_dir
        assert members[layer_dir].isdir()
    top = entry["Layers"][-1].split("/")[0]
    assert json.loads(_read(archive, "repositories")) == {"app": {"v1": top}}


def test_save_by_name_takes_every_tag_by_id_none(store: ImageStore) -> None:
    image = _add(store, ["app:v1", "app:v2", "other:x"])
    [entry] = json.loads(_read(_save(store, ["app"]), "manifest.json"))
    assert entry["RepoTags"] == ["app:v1", "app:v2"]
    [entry] = json.loads(_read(_save(store, [image.id[7:19]]), "manifest.json"))
    assert entry["RepoTags"] is None
    assert "repositories" not in _members(_save(store, [image.id]))
    with pytest.raises(NotFound):
        _save(store, ["app:nope"])
    with pytest.raises(NotFound):
        _save(store, ["nothing"])


def test_shared_layers_are_written_once(store: ImageStore) -> None:
    first = _add(store, ["one:latest"])
    second = store.add_image({**ARCH_CONFIG, "config": {"Cmd": ["true"]}}, _blobs(store, first), ["two:latest"])
    archive = _save(store, ["one", "two"])
    layer_tars = [m for name, m in _members(archive).items() if name.endswith("layer.tar")]
    assert sum(m.isfile() for m in layer_tars) == 2 and sum(m.issym() for m in layer_tars) == 1
    loaded = _load(ImageStore(store.root.parent / "again"), archive)
    assert {i.id for i in loaded} == {first.id, second.id}


def _blobs(store: ImageStore, image: Image) -> list[bytes]:
    return [store.content.get(digest) for digest in image.layer_digests]


def test_oci_archive_layout(store: ImageStore) -> None:
    image = _add(store, ["app:v1", "registry.example:5000/team/app:v2"])
    archive = _save(store, ["app:v1", "registry.example:5000/team/app:v2"], "oci")
    assert json.loads(_read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(_read(archive, "index.json"))
    names = sorted(d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"])
    assert names == ["docker.io/library/app:v1", "registry.example:5000/team/app:v2"]
    assert all(d["digest"] == image.manifest_digest for d in index["manifests"])
    for digest in (image.manifest_digest, image.id, *image.layer_digests):
        assert _read(archive, f"blobs/sha256/{digest[7:]}") == store.content.get(digest)


def test_save_refuses_an_unknown_format(store: ImageStore) -> None:
    _add(store, ["app:v1"])
    with pytest.raises(InvalidArgument):
        SaveSession(store, select_images(store, ["app:v1"]), "zip")


# -- load ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_keeps_id_tags_and_content(store: ImageStore, target: ImageStore, fmt: str) -> None:
    image = _add(store, ["app:v1", "app:v2"])
    [loaded] = _load(target, _save(store, ["app"], fmt))
    assert loaded.id == image.id and set(loaded.tags) == {"app:v1", "app:v2"}
    copy = target.resolve("app:v2")
    assert copy.id == image.id and copy.diff_ids == image.diff_ids
    if fmt == "oci":
        assert copy.manifest_digest == image.manifest_digest  # blobs kept as they are
    assert copy.size == image.size
    dirs = target.layer_dirs(copy)
    assert (dirs[1] / "etc/motd").read_bytes() == b"hello 1"
    _assert_store_sound(target)
    assert not list((target.root / STAGING_DIR).glob("load-*"))


def test_load_of_a_known_image_moves_tags_only(store: ImageStore) -> None:
    image = _add(store, ["app:v1"])
    other = _add(store, ["other:v1"], marker=b"2")
    archive = _save(store, ["app:v1"])
    store.tag("other:v1", "app:v1")  # the tag now names another image
    before = sorted(p.name for p in (store.root / "images/blobs/sha256").iterdir())
    [loaded] = _load(store, archive)
    assert loaded.replaced == (("app:v1", other.id),)
    assert store.resolve("app:v1").manifest_digest == image.manifest_digest  # no second manifest of the image
    assert sorted(p.name for p in (store.root / "images/blobs/sha256").iterdir()) == before


def test_untagged_and_gzip_compressed_archives(store: ImageStore, target: ImageStore) -> None:
    image = _add(store, ["app:v1"])
    [loaded] = _load(target, gzip.compress(_save(store, [image.id])))
    assert loaded.id == image.id and loaded.tags == ()
    assert target.resolve(image.id).repo_tags == ()


def test_oci_names_docker_manifests_and_platform_indexes(target: ImageStore) -> None:
    config, layer = _valid_parts()
    gz = gzip.compress(layer, mtime=0)
    docker_manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": _sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": _sha(gz), "size": len(gz)}
            ],
        }
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": _sha(b"{}"),
                    "size": 2,
                    "platform": {"os": "linux", "architecture": "s390x"},
                },
                {
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": _sha(docker_manifest),
                    "size": len(docker_manifest),
                    "platform": {"os": "linux", "architecture": _goarch()},
                },
            ],
        }
    )
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": _sha(index),
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": "localhost/multi:1"},
            }
        ],
    }
    blobs = {f"blobs/sha256/{_sha(b)[7:]}": b for b in (config, gz, docker_manifest, index)}
    [loaded] = _load(
        target, _tar({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', **blobs, "index.json": json.dumps(top).encode()})
    )
    assert loaded.tags == ("localhost/multi:1",) and loaded.id == _sha(config)
    manifest = target.resolve("localhost/multi:1").manifest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"  # converted to OCI
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"


def _goarch() -> str:
    from supervisor.storage.bootstrap import goarch

    return goarch(os.uname().machine)


def test_podman_style_links_and_bare_oci_tags(target: ImageStore) -> None:
    config, layer = _valid_parts()
    archive = tar_bytes(
        file(f"{_sha(layer)[7:]}.tar", layer),
        file(f"{_sha(config)[7:]}.json", config),
        symlink("legacy/layer.tar", f"../{_sha(layer)[7:]}.tar"),
        file(
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": f"{_sha(config)[7:]}.json",
                        "RepoTags": ["localhost/pod:1"],
                        "Layers": ["legacy/layer.tar"],
                    }
                ]
            ).encode(),
        ),
        gzipped=False,
    )
    assert [i.tags for i in _load(target, archive)] == [("localhost/pod:1",)]


def _bad_archives() -> Iterator[tuple[str, bytes, str]]:
    config, layer = _valid_parts()
    cfg = f"{_sha(config)[7:]}.json"

    def manifest(**item: Any) -> bytes:
        return json.dumps([{"Config": cfg, "RepoTags": ["bad:1"], "Layers": ["l/layer.tar"], **item}]).encode()

    yield "not a tar", b"\x00garbage" * 200, "not a readable"
    yield "empty input", b"", "empty"
    yield "zstd", b"\x28\xb5\x2f\xfd" + b"\0" * 600, "zstd"
    yield "dotdot member", _tar({"../evil": b"x"}), "escapes"
    yield "absolute member", _tar({"/etc/evil": b"x"}), "absolute"
    yield (
        "escaping symlink",
        tar_bytes(
            symlink("l/layer.tar", "../../etc/passwd"),
            file(cfg, config),
            file("manifest.json", manifest()),
            gzipped=False,
        ),
        "outside the archive",
    )
    yield "device node", tar_bytes(device("dev/null", tarfile.CHRTYPE, 1, 3), gzipped=False), "not a regular file"
    yield (
        "duplicate entry",
        tar_bytes(file("manifest.json", b"[]"), file("manifest.json", b"[]"), gzipped=False),
        "twice",
    )
    yield "no index", _tar({"hello": b"x"}), "neither manifest.json"
    yield "legacy format", _tar({"repositories": b"{}"}), "legacy"
    yield "manifest not a list", _tar({"manifest.json": b"{}"}), "not a list"
    yield "missing layer", _tar({cfg: config, "manifest.json": manifest()}), "not in the archive"
    yield "missing config", _tar({"l/layer.tar": layer, "manifest.json": manifest()}), "not in the archive"
    yield (
        "config digest mismatch",
        _tar({cfg: config + b" ", "l/layer.tar": layer, "manifest.json": manifest()}),
        "not to its name",
    )
    yield (
        "layer count mismatch",
        _tar({cfg: config, "l/layer.tar": layer, "manifest.json": manifest(Layers=[])}),
        "diff IDs",
    )
    tampered = tar_bytes(file("x", b"DATA"), gzipped=False)
    yield "diff id mismatch", _tar({cfg: config, "l/layer.tar": tampered, "manifest.json": manifest()}), "diff ID"
    hostile = tar_bytes(file("../../escape", b"x"), gzipped=False)
    hostile_config = json.dumps({**ARCH_CONFIG, "rootfs": {"type": "layers", "diff_ids": [_sha(hostile)]}}).encode()
    yield "hostile layer member", _docker_archive(hostile_config, [hostile], ["bad:1"]), "escapes the layer"
    yield (
        "not a tar layer",
        _docker_archive(
            json.dumps({**ARCH_CONFIG, "rootfs": {"type": "layers", "diff_ids": [_sha(b"x" * 700)]}}).encode(),
            [b"x" * 700],
        ),
        "is not a valid layer",
    )
    windows = json.dumps(
        {**ARCH_CONFIG, "os": "windows", "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]}}
    ).encode()
    yield "windows image", _docker_archive(windows, [layer], ["bad:1"]), "windows"
    yield "digest as tag", _docker_archive(config, [layer], [f"bad@{_sha(b'')}"]), "not a tag"
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha(b"{}"), "size": 3}],
    }
    yield (
        "oci size mismatch",
        _tar({"index.json": json.dumps(index).encode(), f"blobs/sha256/{_sha(b'{}')[7:]}": b"{}"}),
        "descriptor says",
    )
    index["manifests"][0]["size"] = 2
    yield (
        "oci digest mismatch",
        _tar({"index.json": json.dumps(index).encode(), f"blobs/sha256/{_sha(b'{}')[7:]}": b"[]"}),
        "hashes to",
    )
    huge = tarfile.TarInfo("huge")
    huge.size = 1 << 60  # claims an exabyte, sends nothing
    yield "absurd member size", huge.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024, "free where"
    pax = tarfile.TarInfo("pax")
    pax.type = tarfile.XHDTYPE
    pax.size = 1 << 40
    yield "absurd pax header", pax.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024, "extended tar header"


@pytest.mark.parametrize(("name", "data", "message"), list(_bad_archives()), ids=[c[0] for c in _bad_archives()])
def test_bad_archives_are_refused_and_change_nothing(store: ImageStore, name: str, data: bytes, message: str) -> None:
    _add(store, ["keep:me"])
    before = _fingerprint(store)
    with pytest.raises(InvalidArgument) as caught:
        _load(store, data)
    assert message in str(caught.value), str(caught.value)
    assert _fingerprint(store) == before
    assert not list((store.root / STAGING_DIR).glob("load-*"))


def test_layer_expanding_beyond_free_space_is_refused(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    config, layer = _valid_parts()
    archive = _docker_archive(config, [layer], ["big:1"])
    monkeypatch.setattr(archive_load, "free_bytes", lambda _path: 100)
    with pytest.raises(InvalidArgument, match="expands to more than the 100 bytes"):
        _load(store, archive)


def test_sweep_removes_only_dead_staging_dirs(store: ImageStore) -> None:
    from supervisor.storage.archive_staging import staging_dir

    dead = store.root / STAGING_DIR / "load-dead"
    dead.mkdir(parents=True)
    (dead / "1").write_bytes(b"partial")
    with staging_dir(store.root) as live:
        assert sweep_stale(store.root) == ["load-dead"]
        assert live.is_dir()
    assert not live.exists()


# -- crash safety ------------------------------------------------------------------

_KILLER = """
import io, os, signal, sys
from pathlib import Path
from supervisor.storage import archive_load, content, layout
from supervisor.storage.images import ImageStore

point, root, archive = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

class Slow(io.BytesIO):
    def read(self, n=-1):
        if point == "staging" and self.tell() > len(self.getvalue()) // 2:
            die()
        return super().read(min(n, 4096) if n and n > 0 else 4096)

if point == "blob":
    original = content.ContentStore.put_stream
    def put_stream(self, source, expected=None):
        class Partway:
            done = 0
            def read(self, n=-1):
                data = source.read(n)
                self.done += len(data)
                if self.done > 1 << 20:  # inside the big layer, a temp file half written
                    die()
                return data
        return original(self, Partway(), expected)
    content.ContentStore.put_stream = put_stream
if point == "edit":
    original_edit = layout.ImageLayout.edit
    layout.ImageLayout.edit = lambda self: die()
if point == "refs":
    original_write = layout.atomic_write
    def atomic_write(path, data, mode=0o644):
        if path.name == "refs.json":
            die()
        original_write(path, data, mode)
    layout.atomic_write = atomic_write
archive_load.load_archive(ImageStore(root), Slow(archive.read_bytes()))
"""


@pytest.mark.parametrize("point", ["staging", "blob", "edit", "refs", "none"])
def test_a_load_killed_anywhere_leaves_a_sound_store(store: ImageStore, tmp_path: Path, point: str) -> None:
    source = ImageStore(tmp_path / "source")
    big = os.urandom(3 << 20)  # layers big enough to be killed in the middle of
    image = source.add_image({**ARCH_CONFIG}, [_tar({"big": big}), tar_bytes(file("small", b"s"))], ["app:v1"])
    archive = tmp_path / "archive.tar"
    archive.write_bytes(_save(source, ["app:v1"]))
    _add(store, ["keep:me"])
    result = subprocess.run([sys.executable, "-c", _KILLER, point, str(store.root), str(archive)], capture_output=True)
    assert result.returncode == (0 if point == "none" else -signal.SIGKILL), result.stderr.decode()[-2000:]

    reopened = ImageStore(store.root)  # the next daemon opens the store
    _assert_store_sound(reopened)
    ids = {i.id: i for i in reopened.list_images()}
    assert "keep:me" in ids[reopened.resolve("keep:me").id].repo_tags
    if point in ("staging", "blob", "edit"):
        assert image.id not in ids  # nothing of the image is visible
    elif point == "refs":
        assert ids[image.id].repo_tags == ()  # complete, only not yet tagged
    else:
        assert ids[image.id].repo_tags == ("app:v1",)
    # The next load finishes the job and sweeps what the dead one staged.
    [loaded] = load_archive(reopened, io.BytesIO(archive.read_bytes()))
    assert loaded.id == image.id and reopened.resolve("app:v1").id == image.id
    assert not list((store.root / STAGING_DIR).glob("load-*"))
    _assert_store_sound(reopened)
    assert (reopened.layer_dirs(reopened.resolve("app:v1"))[0] / "big").read_bytes() == big

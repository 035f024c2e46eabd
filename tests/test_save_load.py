"""Done-when 3 and 6 (load): images move between corral, Docker, Podman, skopeo and umoci unchanged.

The peers run privately and offline: a dockerd with its own data root and
no network (bench/services.py), podman with its own root, run root and
vfs storage, skopeo and umoci on files. Each test skips, saying why, when
its peer is not installed or cannot start here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DOCKER, REPO, Daemon, state_dir, wait_for

from supervisor.storage.images import Image, ImageStore

sys.path.insert(0, str(REPO))
from bench.services import Dockerd, HostPaths, ServiceError, cgroup_dirs_named, unmount_all_under  # noqa: E402

APP = "saveload/app:v1"
GREETING = b"hello from a saved image\n"
# What podman and skopeo create outside their --root whatever their flags say.
PODMAN_HOST_PATHS = (
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containers/networks",
    "/run/containers",
)

needs_docker_cli = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.fixture(scope="module")
def app(daemon: Daemon) -> Image:
    """saveload/app:v1 in the module daemon: busybox plus a layer with /hello.txt, Cmd cat /hello.txt."""
    store = ImageStore(daemon.root)  # the store is safe to write beside a running daemon
    busybox = store.resolve("busybox:latest")
    base = store.content.get(busybox.layer_digests[0])
    config = {**busybox.config, "config": {**busybox.config["config"], "Cmd": ["cat", "/hello.txt"]}}
    config.pop("rootfs", None)
    return store.add_image(config, [base, _layer({"hello.txt": GREETING})], [APP])


def _busybox_layer(daemon: Daemon, dest: Path) -> Path:
    store = ImageStore(daemon.root)
    dest.write_bytes(store.content.get(store.resolve("busybox:latest").layer_digests[0]))
    return dest


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


# -- peers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    binary = shutil.which("dockerd")
    if DOCKER is None or binary is None:
        pytest.skip("dockerd (Debian's docker.io) is not installed")
    with state_dir() as base:
        peer = Dockerd(base, base.name, binary, DOCKER)
        try:
            peer.start()
        except ServiceError as err:
            problems = peer.stop()
            pytest.skip(f"a private dockerd does not start here: {err} {problems}")
        try:
            yield peer
        finally:
            problems = peer.stop()
            assert not [p for p in problems if "not empty" not in p], problems


class Podman:
    """podman with private state under `base`; containers in their own cgroup parent, removed after."""

    def __init__(self, base: Path, binary: str) -> None:
        self.base = base / "podman"
        self.binary = binary
        self.cgroup_parent = f"{base.name}-podman"
        for sub in ("root", "run", "tmp"):
            (self.base / sub).mkdir(parents=True)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.base / "tmp")}

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [
            self.binary, "--root", str(self.base / "root"), "--runroot", str(self.base / "run"),
            "--tmpdir", str(self.base / "tmp"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args,
        ]  # fmt: skip
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    def run_args(self) -> list[str]:
        # podman raises RLIMIT_NOFILE and RLIMIT_NPROC beyond the hard limits by default, which fails
        # here (EPERM); lowering a limit is always allowed.
        limits = []
        for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
            value = min(resource.getrlimit(which)[1], 1024)
            limits += ["--ulimit", f"{name}={value}:{value}"]
        return ["run", "--rm", "--network", "none", *limits, "--cgroup-parent", f"/{self.cgroup_parent}"]

    def cleanup(self) -> None:
        self("rm", "-af", timeout=60)
        unmount_all_under(self.base)
        for directory in cgroup_dirs_named(self.cgroup_parent, max_depth=1):
            for sub in sorted(Path(directory).rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            with contextlib.suppress(OSError):
                os.rmdir(directory)


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman is not installed")
    host_paths = HostPaths(PODMAN_HOST_PATHS)
    with state_dir() as base:
        peer = Podman(base, binary)
        try:
            yield peer
        finally:
            peer.cleanup()
            host_paths.remove_created()


@pytest.fixture
def scratch() -> Iterator[Path]:
    with state_dir() as base:
        yield base


# -- corral -> peers ------------------------------------------------------------------


@needs_docker_cli
def test_real_docker_loads_and_runs_what_corral_saves(
    clean: Daemon, app: Image, dockerd: Dockerd, scratch: Path
) -> None:
    archive = scratch / "app.tar"
    _ok(clean.docker("save", "-o", str(archive), APP))
    assert "Loaded image: saveload/app:v1" in _ok(dockerd.docker_cli("load", "-i", str(archive)))
    inspect = json.loads(dockerd.docker_cli("image", "inspect", APP).stdout)[0]
    assert inspect["Id"] == app.id and inspect["RootFS"]["Layers"] == list(app.diff_ids)
    run = dockerd.docker_cli("run", "--rm", "--network", "none", APP)
    assert run.stdout.encode() == GREETING
    dockerd.docker_cli("rmi", APP)


def test_podman_loads_and_runs_what_corral_saves(clean: Daemon, app: Image, podman: Podman, scratch: Path) -> None:
    archive = scratch / "app.tar"
    _ok(clean.corral("save", "-o", str(archive), APP))
    loaded = podman("load", "-i", str(archive))
    assert loaded.returncode == 0 and "saveload/app:v1" in loaded.stdout, loaded.stderr
    run = podman(*podman.run_args(), APP)
    if run.returncode != 0 and "OCI runtime" in run.stderr:
        pytest.skip(f"podman cannot run containers here: {run.stderr.strip()}")
    assert run.stdout.encode() == GREETING, run.stderr


def test_skopeo_and_umoci_accept_the_oci_archive(clean: Daemon, app: Image, scratch: Path) -> None:
    skopeo, umoci = shutil.which("skopeo"), shutil.which("umoci")
    if skopeo is None or umoci is None:
        pytest.skip("skopeo and umoci are not installed (apt-get install skopeo umoci)")
    archive = scratch / "app-oci.tar"
    _ok(clean.corral("save", "--format", "oci", "-o", str(archive), APP))
    env = {**os.environ, "TMPDIR": str(scratch)}
    host_paths = HostPaths(PODMAN_HOST_PATHS)
    try:
        for ref in (f"oci-archive:{archive}", f"oci-archive:{archive}:docker.io/{APP}"):
            inspected = json.loads(
                _ok(subprocess.run([skopeo, "inspect", ref], capture_output=True, text=True, env=env))
            )
            assert inspected["Digest"] == app.manifest_digest and inspected["Layers"] == list(app.layer_digests)
    finally:
        host_paths.remove_created()
    layout = scratch / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    bundle = scratch / "bundle"
    _ok(
        subprocess.run(
            [umoci, "unpack", "--image", f"{layout}:docker.io/{APP}", str(bundle)], capture_output=True, text=True
        )
    )
    assert (bundle / "rootfs/hello.txt").read_bytes() == GREETING
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["cat", "/hello.txt"]
    # corral loads the layout directory itself too (the CLI tars it on the way).
    _ok(clean.corral("load", "-i", str(layout)))


# -- peers -> corral -----------------------------------------------------------------


@needs_docker_cli
def test_corral_loads_and_runs_what_dockerd_saves(clean: Daemon, dockerd: Dockerd, scratch: Path) -> None:
    dockerd.import_image(_busybox_layer(clean, scratch / "layer.tar.gz"), "dockerbox:1")
    _ok(dockerd.docker_cli("save", "-o", str(scratch / "d.tar"), "dockerbox:1"))
    docker_id = json.loads(dockerd.docker_cli("image", "inspect", "dockerbox:1").stdout)[0]["Id"]
    assert "Loaded image: dockerbox:1" in _ok(clean.docker("load", "-i", str(scratch / "d.tar")))
    assert json.loads(_ok(clean.docker("image", "inspect", "dockerbox:1")))[0]["Id"] == docker_id
    assert _ok(clean.docker("run", "--rm", "dockerbox:1", "echo", "ran a dockerd image")) == "ran a dockerd image\n"
    dockerd.docker_cli("rmi", "dockerbox:1")


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_corral_loads_and_runs_what_podman_saves(clean: Daemon, podman: Podman, scratch: Path, fmt: str) -> None:
    layer = _busybox_layer(clean, scratch / "layer.tar.gz")
    _ok(podman("import", "--change", 'CMD ["sh"]', str(layer), "localhost/podbox:1"))
    archive = scratch / f"{fmt}.tar"
    _ok(podman("save", "--format", fmt, "-o", str(archive), "localhost/podbox:1"))
    podman_id = json.loads(_ok(podman("image", "inspect", "localhost/podbox:1")))[0]["Id"]
    out = _ok(clean.docker("load", "-i", str(archive)) if DOCKER else clean.corral("load", "-i", str(archive)))
    assert "Loaded image: localhost/podbox:1" in out
    inspect = clean.api("GET", "/images/localhost/podbox:1/json").json()
    if fmt == "docker-archive":
        assert inspect["Id"] == f"sha256:{podman_id}"  # podman's own config travels unchanged
    run = clean.corral("run", "--rm", "localhost/podbox:1", "echo", f"ran a podman {fmt}")
    assert run.stdout == f"ran a podman {fmt}\n", run.stderr


# -- corral -> corral ------------------------------------------------------------------


@needs_docker_cli
def test_round_trip_keeps_id_tags_and_content(clean: Daemon, app: Image, fresh_daemon: Daemon, scratch: Path) -> None:
    _ok(clean.docker("save", "-o", str(scratch / "s.tar"), APP, "busybox"))
    before = {ref: json.loads(_ok(clean.docker("image", "inspect", ref)))[0] for ref in (APP, "busybox:latest")}
    out = _ok(fresh_daemon.docker("load", "-i", str(scratch / "s.tar")))
    assert "Loaded image: saveload/app:v1" in out and "Loaded image: busybox:latest" in out
    for ref, original in before.items():
        copy = json.loads(_ok(fresh_daemon.docker("image", "inspect", ref)))[0]
        for key in ("Id", "RepoTags", "RootFS", "Config", "Created", "Size"):
            assert copy[key] == original[key], key
    assert _ok(fresh_daemon.docker("run", "--rm", APP)).encode() == GREETING


def test_corral_cli_pipes_and_oci_round_trip(clean: Daemon, app: Image, scratch: Path) -> None:
    saved = subprocess.run(
        [sys.executable, "-m", "supervisor.cli.main", "save", APP], env=clean.env, capture_output=True, cwd=REPO
    )
    assert saved.returncode == 0, saved.stderr
    loaded = subprocess.run(
        [sys.executable, "-m", "supervisor.cli.main", "load"], input=saved.stdout, env=clean.env, capture_output=True
    )
    assert loaded.stdout.decode() == f"Loaded image: {APP}\n", loaded.stderr
    _ok(clean.corral("save", "--format", "oci", "-o", str(scratch / "o.tar"), app.id))
    assert _ok(clean.corral("load", "-i", str(scratch / "o.tar"))) == f"Loaded image ID: {app.id}\n"
    missing = clean.corral("save", "-o", str(scratch / "x.tar"), "saveload/none:v1")
    assert missing.returncode != 0 and "No such image" in missing.stderr
    assert not (scratch / "x.tar").exists()


def test_docker_py_save_and_load(clean: Daemon, app: Image) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.socket}", version="1.41")
    try:
        data = b"".join(client.images.get(APP).save(named=True))
        [image] = client.images.load(data)
        assert image.id == app.id and APP in image.tags
        with pytest.raises(docker.errors.ImageLoadError, match="invalid archive"):
            client.images.load(b"not an archive at all" * 100)
    finally:
        client.close()
    events = clean.api(
        "GET",
        "/events",
        query={
            "since": "0",
            "until": str(int(time.time()) + 1),
            "filters": {"type": ["image"], "event": ["save", "load"]},
        },
    )
    seen = {
        (e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]["name"])
        for e in map(json.loads, events.body.splitlines())
    }
    assert {("save", app.id, app.id), ("load", app.id, app.id)} <= seen


# -- bad input and crashes ----------------------------------------------------------


@needs_docker_cli
def test_bad_archives_are_refused_through_the_docker_cli(clean: Daemon, scratch: Path) -> None:
    images_before = _ok(clean.docker("images", "-q"))
    escaping = io.BytesIO()
    with tarfile.open(fileobj=escaping, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    for name, data in (("garbage.tar", b"\1" * 4096), ("escaping.tar", escaping.getvalue())):
        (scratch / name).write_bytes(data)
        result = clean.docker("load", "-i", str(scratch / name))
        assert result.returncode == 1 and "invalid archive" in result.stderr, result
    assert _ok(clean.docker("images", "-q")) == images_before
    assert not list((clean.root / "staging").glob("load-*"))


def test_daemon_killed_mid_load_leaves_a_sound_store(fresh_daemon: Daemon, scratch: Path) -> None:
    store = ImageStore(fresh_daemon.root)
    busybox = store.resolve("busybox:latest")
    config = {k: v for k, v in busybox.config.items() if k != "rootfs"}
    image = ImageStore(scratch / "source").add_image(config, [_layer({"big": os.urandom(16 << 20)})], ["big:1"])
    archive = b"".join(_save_chunks(scratch / "source", "big:1"))
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield archive[: len(archive) // 2]
        release.wait(30)
        yield archive[len(archive) // 2 :]

    def send() -> None:
        with contextlib.suppress(Exception):
            fresh_daemon.api("POST", "/images/load", body=body(), timeout=30)

    sender = threading.Thread(target=send)
    sender.start()
    staging = fresh_daemon.root / "staging"
    wait_for(lambda: any(f.stat().st_size > (4 << 20) for f in staging.glob("load-*/*")), timeout=20)
    fresh_daemon.kill9()
    release.set()
    sender.join(30)
    fresh_daemon.start()

    reopened = ImageStore(fresh_daemon.root)
    assert image.id not in {i.id for i in reopened.list_images()}
    for blob in (fresh_daemon.root / "images/blobs/sha256").iterdir():
        assert _digest_of(blob) == blob.name
    loaded = fresh_daemon.api("POST", "/images/load", body=archive)
    assert b"Loaded image: big:1" in loaded.body
    assert not list(staging.glob("load-*"))
    assert reopened.resolve("big:1").id == image.id


def _save_chunks(root: Path, name: str) -> Iterator[bytes]:
    from supervisor.storage.archive_save import SaveSession, select_images

    store = ImageStore(root)
    return SaveSession(store, select_images(store, [name]), "docker").chunks()


def _digest_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

"""diff, commit and import through the docker CLI, docker-py and the corral CLI (issue 4, done-when 1, 2, 6)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from harness import DOCKER, REPO, Daemon, wait_for

from supervisor.isolation.cgroups import detect
from supervisor.storage.changes import REDIRECT_XATTR

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

# The steps of test_diff_matches_dockerd and what dockerd 20.10.24 (overlay2) answered for them,
# captured with a private dockerd (--bridge=none, busybox imported from corral's bootstrap layer).
# dockerd lists them in no fixed order (its naive diff walks a Go map); corral sorts by path.
DOCKER_STEPS = (
    "echo hello > /etc/motd; echo x >> /etc/passwd; rm /etc/group; mkdir -p /newdir/sub; touch /newdir/sub/f;"
    " rm -rf /var/spool; mkdir /var/spool; touch /var/spool/new; ln /bin/busybox /bin/hl; mkfifo /tmp/fifo;"
    " rm -rf /var/www"
)
DOCKER_DIFF = {
    "C /tmp",
    "A /tmp/fifo",
    "C /etc",
    "A /etc/motd",
    "C /etc/passwd",
    "D /etc/group",
    "A /newdir",
    "A /newdir/sub",
    "A /newdir/sub/f",
    "C /var",
    "C /var/spool",
    "A /var/spool/new",
    "D /var/www",
    "C /bin",
    "A /bin/hl",
}

DOCKER_STEPS_2 = ": >> /etc/passwd; chmod 600 /etc/group; chown 12:34 /bin; rm -rf /etc 2>/dev/null; mkdir -p /etc; echo a > /etc/new"
DOCKER_DIFF_2 = {"C /bin", "C /etc", "A /etc/new", "D /etc/passwd", "D /etc/group"}
DOCKER_STEPS_3 = ": >> /etc/passwd; touch -d @0 /var; ln -s /etc /var/spool2; rm -rf /var/spool; ln -s /etc /var/spool"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _events(daemon: Daemon, since: float, container: str) -> list[tuple[str, str, dict[str, str]]]:
    response = daemon.api("GET", "/events", query={"since": f"{since:.9f}", "until": f"{time.time():.9f}"})
    found = []
    for line in response.body.decode().splitlines():
        event = json.loads(line)
        actor = event["Actor"]
        if event["Type"] == "image" or actor["ID"] == container:
            found.append((event["Type"], event["Action"], actor["Attributes"]))
    return found


@needs_docker
def test_commit_flow_with_both_clis(clean: Daemon) -> None:
    """Done-when 1: change a file, commit by ID and by name with each CLI, run the new image, base unchanged."""
    for cli in (clean.docker, clean.corral):
        container_id = _ok(
            cli("run", "-d", "--name", "sn3", "busybox", "sh", "-c", "echo changed > /etc/motd; sleep 60")
        )
        container_id = container_id.strip()
        wait_for(lambda: _ok(clean.docker("diff", "sn3")).strip())
        assert _ok(cli("commit", container_id, "user/app:v1")).startswith("sha256:")
        image_id = _ok(cli("commit", "sn3", "user/app")).strip()
        tags = _ok(clean.docker("image", "inspect", "--format", "{{json .RepoTags}}", image_id))
        assert json.loads(tags) == ["user/app:latest"]
        for image in ("user/app:v1", "user/app", "user/app:latest"):
            assert _ok(clean.docker("run", "--rm", image, "cat", "/etc/motd")) == "changed\n"
        base = clean.docker("run", "--rm", "busybox", "cat", "/etc/motd")
        assert base.returncode == 1 and "No such file" in base.stderr
        # Still running, and not left frozen: it answers.
        assert _ok(clean.docker("exec", "sn3", "echo", "alive")) == "alive\n"
        _ok(clean.docker("rm", "-f", "sn3"))
        _ok(clean.docker("rmi", "user/app:v1", "user/app"))


@needs_docker
def test_diff_matches_dockerd(clean: Daemon) -> None:
    _ok(clean.docker("run", "--name", "d1", "busybox", "sh", "-c", DOCKER_STEPS))
    lines = _ok(clean.docker("diff", "d1")).splitlines()
    assert set(lines) == DOCKER_DIFF
    assert lines == sorted(lines, key=lambda line: line[2:])
    assert _ok(clean.corral("diff", "d1")).splitlines() == lines
    raw = clean.api("GET", "/containers/d1/changes").json()
    assert {"Path": "/etc/group", "Kind": 2} in raw and {"Path": "/etc/motd", "Kind": 1} in raw
    # What the runtime mounts on (/etc/hosts, /proc, ...) lives in the init layer, as under Docker:
    # a container that changed nothing has no changes; a new working dir is the container's own.
    _ok(clean.docker("run", "--name", "d2", "busybox", "true"))
    assert _ok(clean.docker("diff", "d2")) == ""
    assert clean.api("GET", "/containers/d2/changes").body == b"null\n"
    _ok(clean.docker("run", "--name", "d3", "-w", "/work/deep", "busybox", "true"))
    assert _ok(clean.docker("diff", "d3")).splitlines() == ["A /work", "A /work/deep"]
    # A copy-up that changes nothing is no change, an owner is (dockerd also lists `D /etc/mtab`, a
    # symlink of its init layer that corral's has not).
    _ok(clean.docker("run", "--name", "d4", "busybox", "sh", "-c", DOCKER_STEPS_2))
    assert set(_ok(clean.docker("diff", "d4")).splitlines()) == DOCKER_DIFF_2
    _ok(clean.docker("run", "--name", "d5", "busybox", "sh", "-c", DOCKER_STEPS_3))
    assert _ok(clean.docker("diff", "d5")).splitlines() == ["C /var", "C /var/spool", "A /var/spool2"]
    missing = clean.docker("diff", "nosuch")
    assert missing.returncode != 0 and "No such container: nosuch" in missing.stderr


@needs_docker
def test_commit_config_changes_and_history(clean: Daemon) -> None:
    _ok(clean.docker("run", "--name", "c1", "-e", "KEEP=1", "-w", "/srv", "busybox", "sh", "-c", "echo hi > /srv/x"))
    _ok(
        clean.docker(
            "commit",
            "-a",
            "me <me@example.com>",
            "-m",
            "my msg",
            "-c",
            'CMD ["cat", "/srv/x"]',
            "-c",
            'ENV A=1 B="two words"',
            "-c",
            "EXPOSE 80 53/udp",
            "-c",
            "LABEL k=v",
            "-c",
            "USER nobody",
            "-c",
            "VOLUME /vol",
            "-c",
            "STOPSIGNAL SIGINT",
            "c1",
            "user/conf:1",
        )
    )
    inspect = json.loads(_ok(clean.docker("image", "inspect", "user/conf:1")))[0]
    config = inspect["Config"]
    assert config["Cmd"] == ["cat", "/srv/x"]
    assert config["Env"][-3:] == ["KEEP=1", "A=1", "B=two words"] and config["Env"][0].startswith("PATH=")
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert (config["Labels"], config["User"], config["WorkingDir"]) == ({"k": "v"}, "nobody", "/srv")
    assert config["Volumes"] == {"/vol": {}} and config["StopSignal"] == "SIGINT"
    assert (inspect["Author"], inspect["Comment"]) == ("me <me@example.com>", "my msg")
    history = json.loads(clean.api("GET", "/images/user/conf:1/history").body)
    assert history[0]["CreatedBy"] == "sh -c echo hi > /srv/x" and history[0]["Comment"] == "my msg"
    assert _ok(clean.docker("run", "--rm", "--user", "root", "user/conf:1")) == "hi\n"
    bad = clean.docker("commit", "-c", "FOO bar", "c1", "user/bad")
    assert bad.returncode != 0 and "foo is not a valid change command" in bad.stderr
    bad = clean.docker("commit", "-c", "EXPOSE abc", "c1")
    assert bad.returncode != 0 and "Invalid containerPort: abc" in bad.stderr
    response = clean.api("POST", "/commit", query={"container": "c1", "repo": "Bad_Repo"})
    assert response.status == 400
    assert clean.api("POST", "/commit", query={"container": "nosuch"}).status == 404
    assert "user/bad" not in _ok(clean.docker("images"))
    # An empty upper dir adds no layer: Docker's empty_layer history entry.
    _ok(clean.docker("create", "--name", "c2", "busybox"))
    image_id = _ok(clean.docker("commit", "c2")).strip()
    layers = json.loads(_ok(clean.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image_id)))
    busybox = json.loads(_ok(clean.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", "busybox")))
    assert layers == busybox
    _ok(clean.docker("rmi", "user/conf:1", image_id))


def test_commit_pauses_a_running_container_and_emits_dockers_events(clean: Daemon) -> None:
    client = docker.DockerClient(base_url=f"unix://{clean.socket}", version="1.41")
    container = client.containers.run("busybox", ["sh", "-c", "echo x > /x; sleep 60"], detach=True, name="p1")
    try:
        wait_for(lambda: container.diff())
        assert container.diff() == [{"Path": "/x", "Kind": 1}]
        since = time.time()
        image = container.commit("user/paused", "t1", message="m", author="a", conf={"Env": ["FROM_BODY=1"]})
        assert image.attrs["Config"]["Env"][0] == "FROM_BODY=1" and image.attrs["Comment"] == "m"
        container.commit("user/unpaused", pause=False)
        events = [(kind, action) for kind, action, _ in _events(clean, since, container.id)]
        assert events[-6:] == [
            ("container", "pause"),
            ("image", "tag"),
            ("container", "commit"),
            ("container", "unpause"),
            ("image", "tag"),
            ("container", "commit"),
        ]
        commit = [attrs for kind, action, attrs in _events(clean, since, container.id) if action == "commit"][0]
        assert commit["imageID"] == image.id and commit["imageRef"] == "user/paused:t1" and commit["comment"] == "m"
        _assert_thawed(container.id, clean.cgroup_parent)
        # It runs (a frozen container's exec would hang, not return).
        assert container.exec_run(["true"]).exit_code == 0
    finally:
        container.remove(force=True)
        client.close()


def _assert_thawed(container_id: str, parent: str) -> None:
    cgroup = detect().open(parent, container_id)
    for label, directory in cgroup.paths.items():
        freeze = Path(directory) / "cgroup.freeze"
        if label == "unified" and freeze.exists():
            assert freeze.read_text().strip() == "0"
        state = Path(directory) / "freezer.state"
        if state.exists():
            assert state.read_text().strip() == "THAWED"


def test_a_failed_commit_thaws_the_container_and_adds_no_image(clean: Daemon) -> None:
    _ok(clean.corral("run", "-d", "--name", "f1", "busybox", "sleep", "60"))
    container_id = clean.inspect("f1")["Id"]
    upper = clean.root / "containers" / container_id / "upper"
    (upper / "renamed").mkdir()
    os.setxattr(upper / "renamed", REDIRECT_XATTR, b"/var/www")
    before = clean.api("GET", "/images/json").json()
    response = clean.api("POST", "/commit", query={"container": "f1", "repo": "user/never"})
    assert response.status == 500 and "redirect_dir" in response.message
    assert clean.api("GET", "/images/json").json() == before
    _assert_thawed(container_id, clean.cgroup_parent)
    assert _ok(clean.corral("exec", "f1", "echo", "ok")) == "ok\n"


def _rootfs_tar(gzipped: bool) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        busybox = subprocess.run(["sh", "-c", "command -v busybox"], capture_output=True, text=True).stdout.strip()
        archive.add(os.path.realpath(busybox), "bin/busybox")
        for applet in ("sh", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.LNKTYPE, "bin/busybox"
            archive.addfile(link)
        data = b"imported\n"
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue()) if gzipped else raw.getvalue()


@needs_docker
def test_import_with_both_clis(clean: Daemon, tmp_path: Path) -> None:
    plain, packed = tmp_path / "rootfs.tar", tmp_path / "rootfs.tgz"
    plain.write_bytes(_rootfs_tar(False))
    packed.write_bytes(_rootfs_tar(True))
    image_id = _ok(clean.docker("import", "-c", 'CMD ["cat", "/etc/motd"]', "-m", "hello", str(plain), "imp:1"))
    assert image_id.strip().startswith("sha256:")
    assert _ok(clean.docker("run", "--rm", "imp:1")) == "imported\n"
    inspect = json.loads(_ok(clean.docker("image", "inspect", "imp:1")))[0]
    assert inspect["Comment"] == "hello" and inspect["Config"]["Env"] is None
    assert inspect["Config"]["Cmd"] == ["cat", "/etc/motd"] and len(inspect["RootFS"]["Layers"]) == 1
    with open(packed, "rb") as stdin:
        result = subprocess.run(
            [*_corral(), "import", "-c", "ENV X=1", "-", "imp:gz"],
            stdin=stdin,
            env=clean.env,
            capture_output=True,
            text=True,
        )
    assert result.returncode == 0, result.stderr
    assert _ok(clean.docker("run", "--rm", "imp:gz", "sh", "-c", "echo $X; cat /etc/motd")) == "1\nimported\n"
    history = json.loads(clean.api("GET", "/images/imp:gz/history").body)
    assert history[0]["Comment"] == "Imported from -"
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("../escape"))
    response = clean.api("POST", "/images/create", query={"fromSrc": "-", "repo": "bad"}, body=hostile.getvalue())
    assert response.status == 400 and "escape" in response.message
    assert clean.api("POST", "/images/create", query={"fromSrc": "-", "repo": "bad"}, body=b"not a tar").status == 400
    url = clean.api("POST", "/images/create", query={"fromSrc": "http://example.com/x.tar"}, body=b"")
    assert url.status == 400 and "does not download" in url.message
    assert "bad" not in _ok(clean.docker("images", "--format", "{{.Repository}}")).split()
    # fromImage still fails at once.
    assert clean.api("POST", "/images/create", query={"fromImage": "nosuch", "tag": "x"}).status == 404
    _ok(clean.docker("rmi", "imp:1", "imp:gz"))


def _corral() -> list[str]:
    return [sys.executable, "-m", "supervisor.cli.main"]


# -- a kill at any point of a commit leaves a store that opens cleanly ----------

_DRIVER = r"""
import os, signal, sys
from pathlib import Path
from supervisor.logs import configure
configure(level="warning")
from supervisor.storage import commit, content, layout
from supervisor.storage.images import ImageStore

root, upper, point, nth, when = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
owner, name = {
    "entry": (commit, "_write_entry"),
    "put_stream": (content.ContentStore, "put_stream"),
    "put": (content.ContentStore, "put"),
    "rename": (content.ContentStore, "_commit"),
    "table": (layout, "atomic_write"),
}[point]
original = getattr(owner, name)
calls = 0

def wrapped(*args, **kwargs):
    global calls
    calls += 1
    if calls == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if calls == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, name, wrapped)
store = ImageStore(Path(root))
base = store.resolve("busybox:latest")
config = {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z", "config": {}, "history": []}
commit.store_commit(store, Path(upper), base, config, created_by="x", tags=["crash:test"], compress_level=None)
print("completed")
"""

KILL_POINTS = [
    ("entry", 3, "before"),  # in the middle of writing the layer
    ("put_stream", 1, "after"),  # a base layer blob re-stored
    ("put_stream", 2, "before"),  # the new layer not yet in blobs/
    ("rename", 2, "before"),
    ("put_stream", 2, "after"),  # the new layer stored, no config yet
    ("put", 1, "after"),  # config stored, no manifest
    ("put", 2, "after"),  # manifest stored, tables untouched
    ("table", 1, "after"),  # index.json names it, refs.json does not yet
    ("table", 2, "before"),
]


def _make_upper(upper: Path) -> None:
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/motd").write_text("crash test\n")
    (upper / "data").mkdir()
    for index in range(5):
        (upper / "data" / f"f{index}").write_bytes(os.urandom(200_000))
    os.mknod(upper / "etc/group", 0o600 | 0o020000, os.makedev(0, 0))


def _check_store(root: Path) -> dict[str, Any]:
    """Every ref names a stored manifest whose blobs are all present and verify; returns the refs."""
    from supervisor.storage.digest import file_digest
    from supervisor.storage.images import ImageStore

    store = ImageStore(root)
    refs = store.layout.read_refs()
    for ref in refs:
        image = store.resolve(ref)  # manifest and config verified on read
        for digest in image.layer_digests:
            with open(store.content.path(digest), "rb") as blob:
                assert file_digest(blob)[0] == digest
    for blob in (root / "images/blobs/sha256").iterdir():
        with open(blob, "rb") as handle:
            assert file_digest(handle)[0] == f"sha256:{blob.name}", f"blob {blob.name} does not verify"
    return refs


@pytest.mark.parametrize(("point", "nth", "when"), KILL_POINTS)
def test_kill_during_commit_leaves_a_clean_store(tmp_path: Path, point: str, nth: int, when: str) -> None:
    from supervisor.storage import gc
    from supervisor.storage.images import ImageStore

    root = tmp_path / "root"
    subprocess.run([*_corral(), "image", "bootstrap", "--root", str(root)], check=True, capture_output=True, cwd=REPO)
    upper = tmp_path / "upper"
    _make_upper(upper)
    run = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(root), str(upper), point, str(nth), when],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == -9, f"the kill point was not reached: {run.stdout} {run.stderr}"
    refs = _check_store(root)
    if "crash:test" in refs:
        image = ImageStore(root).resolve("crash:test")
        assert len(image.layer_digests) == 2
    store = ImageStore(root)
    gc.recover(store)
    assert not list((root / "images/ingest").iterdir())
    assert set(_check_store(root)) >= {"busybox:latest"}
    # And the next commit works.
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(root), str(upper), "entry", "0", "never"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.stdout.strip() == "completed", done.stderr
    assert "crash:test" in _check_store(root)

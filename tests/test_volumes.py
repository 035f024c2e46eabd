"""Done-when 5: volumes and mounts through the docker CLI, docker-py, the corral CLI and TOML configs.

Named volumes outlive their containers and are seeded from the image on
first use; binds are read-only when asked (EROFS inside) and write through
otherwise; a volume in use cannot be removed (409); anonymous volumes go
with `rm -v`; tmpfs mounts take a size; image VOLUMEs become anonymous
volumes; symlinks in an image never lead a mount or a seed onto the host.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DOCKER, Daemon, wait_for
from storage.tarbuild import device, directory, file, hardlink, symlink, tar_bytes, with_pax

from supervisor.cli.client import Client
from supervisor.storage.images import ImageStore

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]


@pytest.fixture
def vclean(clean: Daemon) -> Iterator[Daemon]:
    """The module's daemon; containers and then every volume removed after the test."""
    yield clean
    clean.remove_all()
    response = clean.api("POST", "/volumes/prune", query={"filters": json.dumps({"all": ["true"]})})
    assert response.ok, response.message
    assert clean.api("GET", "/volumes").json()["Volumes"] == []


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return str(result.stdout)


def volume_path(d: Daemon, name: str) -> Path:
    return d.root / "volumes" / name / "_data"


def _add_image(d: Daemon, tag: str, *entries: Any, volumes: tuple[str, ...] = ()) -> None:
    """busybox plus one layer of `entries`, with `volumes` as the image's VOLUMEs."""
    store = ImageStore(d.root)
    base = store.resolve("busybox")
    config = json.loads(json.dumps(base.config))
    config.pop("rootfs", None)
    if volumes:
        config["config"]["Volumes"] = {path: {} for path in volumes}
    layers: list[Path | bytes] = [store.content.path(digest) for digest in base.layer_digests]
    store.add_image(config, [*layers, tar_bytes(*entries)], [tag])


# -- Done-when 5 -------------------------------------------------------------------


def test_named_volume_is_seeded_and_outlives_its_containers(vclean: Daemon) -> None:
    d = vclean
    # A new volume over /etc gets the image's /etc first.
    out = ok(
        d.docker(
            "run", "--name", "first", "-v", "keep:/etc", "busybox", "sh", "-c", "cat /etc/passwd; echo one > /etc/note"
        )
    )
    assert out.startswith("root:x:0:0:")
    assert "keep" in ok(d.docker("volume", "ls", "-q")).split()
    ok(d.docker("rm", "first"))
    # Used elsewhere, the data is there; and a non-empty volume is not seeded again.
    out = ok(d.docker("run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "cat /data/note; ls /data"))
    assert out.splitlines()[0] == "one" and "passwd" in out
    assert (volume_path(d, "keep") / "note").read_text() == "one\n"
    info = json.loads(ok(d.docker("volume", "inspect", "keep")))[0]
    assert info["Name"] == "keep" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Mountpoint"] == str(volume_path(d, "keep"))
    # rm without -v never takes a named volume, nor does rm -v.
    ok(d.docker("run", "--name", "second", "-v", "keep:/data", "busybox", "true"))
    ok(d.docker("rm", "-v", "second"))
    assert "keep" in ok(d.docker("volume", "ls", "-q")).split()


def test_bind_mounts_read_only_and_read_write(vclean: Daemon, tmp_path: Path) -> None:
    d = vclean
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in").write_text("from host\n")
    refused = d.docker("run", "--rm", "-v", f"{host}:/h:ro", "busybox", "sh", "-c", "cat /h/in; echo x > /h/out")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert refused.stdout == "from host\n" and not (host / "out").exists()
    ok(d.docker("run", "--rm", "-v", f"{host}:/h", "busybox", "sh", "-c", "echo written > /h/out"))
    assert (host / "out").read_text() == "written\n"
    # --mount type=bind,readonly: the same, with inspect showing Docker's mount point.
    ok(
        d.docker(
            "create",
            "--name",
            "bnd",
            "--mount",
            f"type=bind,source={host},target=/m,readonly",
            "-v",
            f"{host}:/v:ro",
            "busybox",
            "true",
        )
    )
    inspect = d.inspect("bnd")
    assert inspect["Mounts"] == [
        {"Type": "bind", "Source": str(host), "Destination": "/m", "Mode": "", "RW": False, "Propagation": "rprivate"},
        {
            "Type": "bind",
            "Source": str(host),
            "Destination": "/v",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        },
    ]
    assert inspect["HostConfig"]["Binds"] == [f"{host}:/v:ro"]
    assert inspect["HostConfig"]["Mounts"] == [{"Type": "bind", "Source": str(host), "Target": "/m", "ReadOnly": True}]
    # `-v` makes a missing host directory, as Docker does; `--mount` refuses it.
    missing = tmp_path / "made" / "here"
    ok(d.docker("run", "--rm", "-v", f"{missing}:/x", "busybox", "true"))
    assert missing.is_dir()
    refused = d.docker("run", "--rm", "--mount", f"type=bind,source={tmp_path}/absent,target=/x", "busybox", "true")
    assert refused.returncode == 125 and "bind source path does not exist" in refused.stderr
    assert not (tmp_path / "absent").exists()


def test_volume_in_use_cannot_be_removed(vclean: Daemon) -> None:
    d = vclean
    ok(d.docker("volume", "create", "busy"))
    cid = ok(d.docker("run", "-d", "--name", "user", "-v", "busy:/d", "busybox", *SLEEPER)).strip()
    refused = d.docker("volume", "rm", "busy")
    assert refused.returncode == 1 and f"remove busy: volume is in use - [{cid}]" in refused.stderr
    response = d.api("DELETE", "/volumes/busy", query={"force": True})
    assert response.status == 409, response.message
    # A stopped container uses it too.
    ok(d.docker("stop", "user"))
    assert d.docker("volume", "rm", "-f", "busy").returncode == 1
    ok(d.docker("rm", "user"))
    assert ok(d.docker("volume", "rm", "busy")).strip() == "busy"
    assert d.api("GET", "/volumes/busy").status == 404
    assert d.docker("volume", "rm", "-f", "busy").returncode == 0  # force: a missing volume is no error
    missing = d.docker("volume", "rm", "busy")
    assert missing.returncode == 1 and "get busy: no such volume" in missing.stderr


def test_anonymous_volumes_go_with_rm_v(vclean: Daemon) -> None:
    d = vclean
    ok(d.docker("run", "--name", "kept", "-v", "/data", "busybox", "sh", "-c", "echo a > /data/a"))
    ok(d.docker("run", "--name", "dropped", "-v", "/data", "-v", "named:/n", "busybox", "true"))
    kept = d.inspect("kept")["Mounts"][0]
    assert kept["Type"] == "volume" and len(kept["Name"]) == 64 and kept["Mode"] == "" and kept["RW"] is True
    assert d.inspect("kept")["Config"]["Volumes"] == {"/data": {}}
    dropped = next(m["Name"] for m in d.inspect("dropped")["Mounts"] if m["Destination"] == "/data")
    labels = json.loads(ok(d.docker("volume", "inspect", dropped)))[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    ok(d.docker("rm", "kept"))
    ok(d.docker("rm", "-v", "dropped"))
    names = ok(d.docker("volume", "ls", "-q")).split()
    assert kept["Name"] in names and dropped not in names and "named" in names
    assert (volume_path(d, kept["Name"]) / "a").read_text() == "a\n"
    # --rm takes its anonymous volumes along, as Docker's AutoRemove does.
    ok(d.docker("run", "--rm", "-v", "/gone", "busybox", "true"))
    assert sorted(ok(d.docker("volume", "ls", "-q")).split()) == sorted([kept["Name"], "named"])
    # API 1.41's prune (the docker CLI's at our version) removes every unused volume.
    pruned = ok(d.docker("volume", "prune", "-f"))
    assert kept["Name"] in pruned and "named" in pruned and "Total reclaimed space" in pruned
    assert ok(d.docker("volume", "ls", "-q")) == ""


def test_tmpfs_mounts(vclean: Daemon) -> None:
    d = vclean
    out = ok(
        d.docker(
            "run",
            "--rm",
            "--tmpfs",
            "/t:size=1m,mode=1777",
            "busybox",
            "sh",
            "-c",
            "grep ' /t ' /proc/mounts; stat -c %a /t",
        )
    )
    assert "tmpfs /t tmpfs rw,nosuid,nodev,noexec" in out and "size=1024k" in out and out.endswith("1777\n")
    full = d.docker(
        "run", "--rm", "--tmpfs", "/t:size=1m", "busybox", "dd", "if=/dev/zero", "of=/t/big", "bs=1024", "count=2048"
    )
    assert full.returncode != 0 and "No space left on device" in full.stderr
    out = ok(
        d.docker(
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,target=/m,tmpfs-size=64k,tmpfs-mode=0700",
            "busybox",
            "sh",
            "-c",
            "grep ' /m ' /proc/mounts; stat -c %a /m",
        )
    )
    assert "size=64k" in out and out.endswith("700\n")
    ok(
        d.docker(
            "create",
            "--name",
            "tmp1",
            "--tmpfs",
            "/run:exec",
            "--mount",
            "type=tmpfs,dst=/m,readonly",
            "busybox",
            "true",
        )
    )
    inspect = d.inspect("tmp1")
    assert inspect["HostConfig"]["Tmpfs"] == {"/run": "exec"}
    assert inspect["Mounts"] == [
        {"Type": "tmpfs", "Source": "", "Destination": "/m", "Mode": "", "RW": False, "Propagation": ""}
    ]
    ok(d.docker("start", "-a", "tmp1"))
    out = ok(
        d.docker(
            "run",
            "--rm",
            "--tmpfs",
            "/run:exec",
            "busybox",
            "sh",
            "-c",
            "cp /bin/busybox /run/busybox && /run/busybox echo ran",
        )
    )
    assert out == "ran\n"


def test_image_volumes_are_anonymous_and_seeded(vclean: Daemon) -> None:
    d = vclean
    _add_image(
        d,
        "corral-test/voldata:1",
        directory("data", mode=0o750, uid=1000, gid=1000),
        file("data/f", b"from the image\n", mode=0o640, uid=1000, gid=1000),
        file("data/tool", b"#!/bin/sh\necho tool\n", mode=0o4755, uid=1000, gid=1001),
        hardlink("data/tool-link", "data/tool"),
        symlink("data/alias", "f"),
        device("data/pipe", tarfile.FIFOTYPE, mode=0o600),
        with_pax(file("data/x", b"x"), {"SCHILY.xattr.user.origin": "layer"}),
        directory("empty", mode=0o1777),
        volumes=("/data", "/empty"),
    )
    out = ok(
        d.docker(
            "run",
            "--name",
            "iv",
            "corral-test/voldata:1",
            "sh",
            "-c",
            "cat /data/f; stat -c '%a %u %g %h %n' /data /data/tool /data/tool-link /data/pipe /empty; readlink /data/alias",
        )
    )
    lines = out.splitlines()
    assert lines[0] == "from the image" and lines[1].startswith("750 1000 1000 ") and lines[6] == "f"
    assert lines[2:6] == [
        "4755 1000 1001 2 /data/tool",
        "4755 1000 1001 2 /data/tool-link",
        "600 0 0 1 /data/pipe",
        "1777 0 0 2 /empty",
    ]
    mounts = {m["Destination"]: m for m in d.inspect("iv")["Mounts"]}
    assert set(mounts) == {"/data", "/empty"} and all(m["Type"] == "volume" for m in mounts.values())
    data = volume_path(d, mounts["/data"]["Name"])
    assert os.getxattr(data / "x", "user.origin") == b"layer"
    assert os.stat(data / "tool").st_ino == os.stat(data / "tool-link").st_ino
    assert d.inspect("iv")["Config"]["Volumes"] == {"/data": {}, "/empty": {}}
    # A name or bind at an image VOLUME's path replaces its anonymous volume; nocopy skips the seed.
    ok(d.docker("run", "--name", "iv2", "-v", "mine:/data:nocopy", "corral-test/voldata:1", "ls", "-A", "/data"))
    assert [m["Name"] for m in d.inspect("iv2")["Mounts"] if m["Destination"] == "/data"] == ["mine"]
    assert os.listdir(volume_path(d, "mine")) == []
    ok(d.docker("rm", "-v", "iv", "iv2"))
    assert ok(d.docker("volume", "ls", "-q")).split() == ["mine"]


def test_a_volume_over_a_file_is_refused(vclean: Daemon) -> None:
    d = vclean
    _add_image(d, "corral-test/volfile:1", file("conf", b"x"), volumes=("/conf",))
    refused = d.docker("run", "--rm", "corral-test/volfile:1", "true")
    assert refused.returncode == 125 and "cannot mount volume over existing file, file exists /conf" in refused.stderr
    assert ok(d.docker("volume", "ls", "-q")) == ""  # the failed create left no anonymous volume behind


def test_symlinked_targets_stay_inside_the_container(vclean: Daemon, tmp_path: Path) -> None:
    d = vclean
    _add_image(
        d,
        "corral-test/links:1",
        directory("etc"),
        file("etc/only-in-image", b"image\n"),
        symlink("data", "/etc"),
        symlink("up", "../../../../../../../etc"),
        symlink("top", "/"),
        symlink("file-link", "/etc/hostname"),
    )
    host_etc = sorted(os.listdir("/etc"))
    # Seeded through the symlink: the image's /etc (busybox's passwd, the marker), not the host's.
    out = ok(
        d.docker("run", "--rm", "-v", "seeded:/up", "corral-test/links:1", "sh", "-c", "ls /etc; echo hi > /up/planted")
    )
    assert "only-in-image" in out and "planted" not in host_etc
    seeded = sorted(os.listdir(volume_path(d, "seeded")))
    assert "only-in-image" in seeded and "passwd" in seeded and "planted" in seeded
    assert "debian_version" not in seeded and not Path("/etc/planted").exists()
    # A bind through a symlinked target lands on the container's /etc.
    host = tmp_path / "bound"
    host.mkdir()
    (host / "marker").write_text("bound\n")
    out = ok(
        d.docker(
            "run", "--rm", "-v", f"{host}:/data", "corral-test/links:1", "sh", "-c", "cat /etc/marker; touch /data/new"
        )
    )
    assert out == "bound\n" and (host / "new").exists() and not Path("/etc/new").exists()
    assert sorted(os.listdir("/etc")) == host_etc
    # One that leads to / is refused, both for a seed (at create) and for a mount (at start).
    refused = d.docker("run", "--rm", "-v", "rootvol:/top", "corral-test/links:1", "true")
    assert refused.returncode == 125 and "leads to /" in refused.stderr
    refused = d.docker("run", "--rm", "-v", f"{host}:/top", "corral-test/links:1", "true")
    assert refused.returncode != 0 and "leads to / inside the container" in refused.stderr
    assert sorted(os.listdir("/etc")) == host_etc


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mount", "type=bind,source=/nonexistent-corral,target=/x"], "bind source path does not exist"),
        (["--mount", "type=volume,target=/x,bogus=1"], "unexpected key 'bogus' in 'bogus=1'"),
        (["--mount", "type=tmpfs,target=/x,source=s"], "field Source must not be specified"),
        (["--mount", "type=foo,target=/x"], "mount type unknown"),
        (["--mount", "type=volume,source=v1"], "target is required"),
        (["--mount", "type=volume,target=/x,volume-opt=type=tmpfs"], "driver options are not supported"),
        (["--tmpfs", "/x:size=1m,bogus"], "invalid tmpfs option 'bogus'"),
        (["--tmpfs", "/x:rw,ro,uid"], "invalid tmpfs option 'uid'"),
        (["-v", "/x:rw"], "invalid volume specification: '/x:rw'"),
        (["-v", "v1:relative"], "mount path must be absolute"),
        (["-v", "v1:/x:bogus"], "invalid mode: bogus"),
        (["-v", "v1:/x:shared"], "field BindOptions must not be specified"),
        (["-v", "a/b:/x"], "includes invalid characters for a local volume name"),
        (["-v", "v1:/x", "--tmpfs", "/x"], "Duplicate mount point: /x"),
        (["--volumes-from", "other"], "HostConfig.VolumesFrom is not supported"),
    ],
)
def test_bad_mount_requests(vclean: Daemon, args: list[str], message: str) -> None:
    result = vclean.docker("run", "--rm", *args, "busybox", "true")
    assert result.returncode == 125, result.stderr
    assert message in result.stderr
    assert vclean.docker("ps", "-aq").stdout == ""
    assert ok(vclean.docker("volume", "ls", "-q")) == ""


def test_volume_api_requests(vclean: Daemon) -> None:
    d = vclean
    created = d.api("POST", "/volumes/create", json={"Name": "lab", "Labels": {"team": "a"}})
    assert created.status == 201 and created.json()["Labels"] == {"team": "a"}
    # Creating it again answers with the same volume.
    assert d.api("POST", "/volumes/create", json={"Name": "lab"}).json()["CreatedAt"] == created.json()["CreatedAt"]
    anonymous = d.api("POST", "/volumes/create", json={}).json()
    assert len(anonymous["Name"]) == 64 and anonymous["Labels"] == {"com.docker.volume.anonymous": ""}
    for body, status, message in [
        ({"Name": "a/b"}, 400, "includes invalid characters"),
        ({"Name": "x"}, 400, "volume name is too short"),
        ({"Name": "n1", "Driver": "nfs"}, 404, 'plugin "nfs" not found'),
        ({"Name": "n1", "DriverOpts": {"type": "tmpfs"}}, 400, "driver options are not supported"),
    ]:
        response = d.api("POST", "/volumes/create", json=body)
        assert (response.status, message in response.message) == (status, True), response.message
    ok(d.docker("run", "--name", "holder", "-v", "lab:/d", "busybox", "true"))

    def names(filters: dict[str, list[str]]) -> list[str]:
        response = d.api("GET", "/volumes", query={"filters": json.dumps(filters)})
        assert response.ok, response.message
        return sorted(v["Name"] for v in response.json()["Volumes"])

    assert names({"label": ["team=a"]}) == ["lab"]
    assert names({"label": ["team=b"]}) == []
    assert names({"dangling": ["true"]}) == [anonymous["Name"]]
    assert names({"dangling": ["false"]}) == ["lab"]
    assert names({"name": ["^la"]}) == ["lab"]
    assert d.api("GET", "/volumes", query={"filters": json.dumps({"bogus": ["1"]})}).status == 400
    # API >= 1.42: prune takes anonymous volumes only, unless all=true.
    with Client(d.socket, api_version="1.43") as client:

        def prune(filters: dict[str, list[str]]) -> list[str]:
            response = client.request("POST", "/volumes/prune", query={"filters": json.dumps(filters)})
            assert response.ok, response.message
            return list(response.json()["VolumesDeleted"])

        assert prune({}) == [anonymous["Name"]]
        assert prune({"all": ["true"]}) == []  # lab is in use
        ok(d.docker("rm", "holder"))
        assert prune({"all": ["1"], "label!": ["team=a"]}) == []
        assert prune({"all": ["1"], "label": ["team"]}) == ["lab"]


def test_volume_events(vclean: Daemon) -> None:
    d = vclean
    start = time.time()
    ok(d.docker("volume", "create", "ev"))
    ok(d.docker("volume", "rm", "ev"))
    events = d.docker(
        "events",
        "--since",
        f"{start:.6f}",
        "--until",
        f"{time.time():.6f}",
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    )
    assert ok(events).splitlines() == ["create ev", "destroy ev"]


def test_restart_keeps_volume_data_and_mounts(vclean: Daemon) -> None:
    d = vclean
    ok(
        d.docker(
            "run",
            "-d",
            "--name",
            "rst",
            "-v",
            "rv:/d",
            "--tmpfs",
            "/t",
            "busybox",
            "sh",
            "-c",
            "echo run >> /d/runs; echo x > /t/x; trap 'exit 0' TERM; sleep 300 & wait",
        )
    )
    ok(d.docker("restart", "-t", "1", "rst"))
    wait_for(lambda: (volume_path(d, "rv") / "runs").read_text() == "run\nrun\n")
    assert ok(d.docker("exec", "rst", "ls", "/t")) == "x\n"  # a tmpfs starts empty with each start


def test_host_mount_table_untouched(vclean: Daemon) -> None:
    """Every mount lives in the container's own namespace: none shows up on the host, even while running."""
    d = vclean
    before = Path("/proc/self/mountinfo").read_text()
    ok(d.docker("run", "-d", "--name", "mnt", "-v", "hv:/d", "--tmpfs", "/t", "busybox", *SLEEPER))
    during = Path("/proc/self/mountinfo").read_text()
    assert "hv/_data" not in during and "hv/_data" not in before
    assert stat.S_ISDIR(os.stat(volume_path(d, "hv")).st_mode)

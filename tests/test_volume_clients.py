"""Volumes and mounts through docker-py, the corral CLI and TOML configs (see test_volumes.py for the docker CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, wait_for
from test_volumes import ok, vclean, volume_path

__all__ = ["vclean"]  # the fixture, imported for this module's tests


def test_docker_py_volumes(vclean: Daemon, tmp_path: Path) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{vclean.socket}", version="1.41")
    try:
        volume = client.volumes.create(name="pyvol", labels={"via": "py"})
        assert volume.attrs["Labels"] == {"via": "py"}
        host = tmp_path / "pybind"
        host.mkdir()
        out = client.containers.run(
            "busybox",
            ["sh", "-c", "echo py > /v/f; cat /etc/passwd >/dev/null; echo ok > /b/f; df /t | tail -1"],
            volumes={"pyvol": {"bind": "/v", "mode": "rw"}, str(host): {"bind": "/b", "mode": "rw"}},
            mounts=[docker.types.Mount("/t", None, type="tmpfs", tmpfs_size="2m")],
            remove=True,
        )
        assert out.split()[1] == b"2048"
        assert (host / "f").read_text() == "ok\n" and (volume_path(vclean, "pyvol") / "f").read_text() == "py\n"
        holder = client.containers.create("busybox", "true", volumes=["pyvol:/v:ro"])
        with pytest.raises(docker.errors.APIError) as refused:
            client.volumes.get("pyvol").remove()
        assert refused.value.status_code == 409
        assert [v.name for v in client.volumes.list(filters={"label": "via=py"})] == ["pyvol"]
        holder.remove()
        client.volumes.get("pyvol").remove()
        assert client.volumes.list() == []
    finally:
        client.close()


def test_corral_cli_volumes(vclean: Daemon) -> None:
    d = vclean
    assert ok(d.corral("volume", "create", "--label", "k=v", "cv")).strip() == "cv"
    assert ok(d.corral("volume", "ls", "-q")).split() == ["cv"]
    assert ok(d.corral("volume", "ls")).splitlines() == ["DRIVER   VOLUME NAME", "local    cv"]
    assert ok(d.corral("volume", "ls", "-q", "-f", "label=k=v")).split() == ["cv"]
    assert json.loads(ok(d.corral("volume", "inspect", "cv")))[0]["Labels"] == {"k": "v"}
    out = ok(
        d.corral(
            "run",
            "--name",
            "cc",
            "-v",
            "cv:/etc",
            "--tmpfs",
            "/t:size=64k",
            "--mount",
            "type=volume,target=/anon",
            "busybox",
            "sh",
            "-c",
            "head -1 /etc/passwd; grep -c ' /t ' /proc/mounts",
        )
    )
    assert out == "root:x:0:0:root:/root:/bin/sh\n1\n"
    refused = d.corral("volume", "rm", "cv")
    assert refused.returncode == 1 and "volume is in use" in refused.stderr
    bad = d.corral("run", "--rm", "--mount", "type=volume,target=/x,nope=1", "busybox", "true")
    assert bad.returncode == 125 and "unexpected key 'nope'" in bad.stderr
    ok(d.corral("rm", "cc"))
    # corral's prune: anonymous volumes only unless -a (the anonymous one of `cc` is left after rm without -v).
    pruned = ok(d.corral("volume", "prune", "-f"))
    assert pruned.startswith("Deleted Volumes:\n") and "cv" not in pruned
    assert ok(d.corral("volume", "ls", "-q")).split() == ["cv"]
    assert "cv" in ok(d.corral("volume", "prune", "-f", "-a"))
    assert ok(d.corral("volume", "rm", "-f", "cv")).strip() == "cv"


# -- TOML configs -----------------------------------------------------------------------


@pytest.fixture
def configs(vclean: Daemon, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "configs"
    directory.mkdir()
    yield directory
    for path in directory.iterdir():
        path.unlink()
    if vclean.api("GET", "/corral/configs").ok:
        vclean.api("POST", "/corral/configs/reload")


def _status(d: Daemon) -> dict[str, dict[str, Any]]:
    response = d.api("GET", "/corral/configs")
    assert response.ok, response.message
    return {c["Name"]: c for c in response.json()["Containers"]}


def test_toml_mounts_and_volume_surviving_recreation(vclean: Daemon, configs: Path) -> None:
    d = vclean
    site = configs.parent / "site"
    site.mkdir()
    (site / "index.html").write_text("hello\n")
    template = (
        '[containers.db]\nimage = "busybox"\n'
        'command = ["sh", "-c", "echo run >> /data/runs; trap \'exit 0\' TERM; sleep 300 & wait"]\n'
        'env = {{ EDIT = "{edit}" }}\n'
        "mounts = [\n"
        '  {{ type = "volume", source = "dbdata", target = "/data" }},\n'
        '  {{ type = "bind", source = "../site", target = "/site", readonly = true }},\n'
        '  {{ type = "tmpfs", target = "/scratch", size = "1MiB" }},\n'
        "]\n"
    )
    (configs / "db.toml").write_text(template.format(edit="1"))
    response = d.api("PUT", "/corral/configs", json={"Directory": str(configs)})
    assert response.ok, response.message
    wait_for(lambda: _status(d).get("db", {}).get("State") == "running")
    first = d.inspect("db")["Id"]
    assert ok(d.docker("exec", "db", "cat", "/site/index.html", "/data/runs")) == "hello\nrun\n"
    refused = d.docker("exec", "db", "touch", "/site/new")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert "size=1024k" in ok(d.docker("exec", "db", "grep", " /scratch ", "/proc/mounts"))
    # An edit recreates the container; its named volume keeps the data.
    (configs / "db.toml").write_text(template.format(edit="2"))
    d.api("POST", "/corral/configs/reload")

    def recreated() -> bool:
        # One request per look: the old container may go between two.
        response = d.api("GET", "/containers/db/json")
        return bool(response.ok and response.json()["Id"] != first and response.json()["State"]["Running"])

    wait_for(recreated)
    wait_for(lambda: (volume_path(d, "dbdata") / "runs").read_text() == "run\nrun\n")
    # A missing bind source is the config's error, with the path named.
    (configs / "db.toml").write_text(template.format(edit="3").replace("../site", "../nowhere"))
    d.api("POST", "/corral/configs/reload")
    wait_for(lambda: "bind source path does not exist" in str(_status(d)["db"].get("Error", "")))
    (configs / "db.toml").unlink()
    d.api("POST", "/corral/configs/reload")
    wait_for(lambda: d.api("GET", "/containers/db/json").status == 404)
    assert "dbdata" in ok(d.docker("volume", "ls", "-q")).split()

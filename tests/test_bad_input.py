"""Done-when 6: bad input gets a clear error and leaves nothing behind."""

from __future__ import annotations

import pytest
from harness import DOCKER, Daemon


def _nothing_left(daemon: Daemon) -> None:
    assert daemon.api("GET", "/containers/json", query={"all": True}).json() == []
    assert daemon.container_dirs() == []
    assert daemon.cgroups_left() == []


def test_unknown_image(clean: Daemon) -> None:
    result = clean.corral("run", "--rm", "nosuch:img", "true")
    assert result.returncode == 125
    assert "No such image: nosuch:img" in result.stderr
    _nothing_left(clean)


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_unknown_image_through_docker_fails_fast_without_network(clean: Daemon) -> None:
    # The docker CLI tries a pull after the 404; corral answers at once and touches no registry.
    result = clean.docker("run", "--rm", "nosuch:img", "true", timeout=10)
    assert result.returncode == 125
    assert "Unable to find image 'nosuch:img' locally" in result.stderr
    assert "cannot pull from registries" in result.stderr
    never = clean.docker("run", "--rm", "--pull", "never", "nosuch:img", "true")
    assert never.returncode == 125 and "No such image" in never.stderr
    _nothing_left(clean)


def test_name_in_use(clean: Daemon) -> None:
    assert clean.corral("create", "--name", "taken", "busybox", "true").returncode == 0
    again = clean.corral("run", "--name", "taken", "busybox", "true")
    assert again.returncode == 125
    assert 'The container name "/taken" is already in use' in again.stderr
    response = clean.api(
        "POST", "/containers/create", query={"name": "taken"}, json={"Image": "busybox", "Cmd": ["true"]}
    )
    assert response.status == 409
    clean.corral("rm", "taken")
    _nothing_left(clean)


def test_command_not_found_and_not_executable(clean: Daemon) -> None:
    missing = clean.corral("run", "--rm", "busybox", "nosuchcmd")
    assert missing.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in missing.stderr
    not_exec = clean.corral("run", "--rm", "busybox", "/etc/passwd")
    assert not_exec.returncode == 126
    assert "permission denied" in not_exec.stderr
    kept = clean.corral("run", "--name", "kept", "busybox", "nosuchcmd")
    assert kept.returncode == 127
    state = clean.inspect("kept")["State"]
    assert state["Status"] == "created" and state["ExitCode"] == 127 and "executable file not found" in state["Error"]
    clean.corral("rm", "kept")
    _nothing_left(clean)


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_command_not_found_through_docker(clean: Daemon) -> None:
    result = clean.docker("run", "--rm", "busybox", "nosuchcmd")
    assert result.returncode == 127, result.stderr
    _nothing_left(clean)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "lots"], "invalid --memory: 'lots'"),
        (["--memory", "1k"], "Minimum memory limit allowed is 6MB"),
        (["--memory", "64m", "--memory-swap", "32m"], "Minimum memoryswap limit should be larger than memory limit"),
        (["--cpus", "99"], "Range of CPUs is from 0.01 to"),
        (["--cpus", "half"], "invalid --cpus"),
        (["--cpuset-cpus", "0-999"], "Requested CPUs are not available"),
        (["--cap-add", "CAP_FLY"], "unknown capability: 'CAP_FLY'"),
        (["--security-opt", "seccomp=x.json"], "is not supported"),
        (["--user", "ghost"], "unable to find user ghost"),
    ],
)
def test_bad_values(clean: Daemon, flags: list[str], message: str) -> None:
    result = clean.corral("run", "--rm", *flags, "busybox", "true")
    assert result.returncode == 125, (result.returncode, result.stderr)
    assert message in result.stderr
    _nothing_left(clean)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"Cmd": ["true"]}', "Image is required"),
        (b'{"Image": "busybox", "Cmd": "true", "HostConfig": {"Memory": "lots"}}', "invalid HostConfig.Memory"),
        (b'{"Image": "busybox", "Env": [1]}', "invalid Env"),
        (b'{"Image": "busybox", "HostConfig": {"VolumesFrom": ["other"]}}', "HostConfig.VolumesFrom is not supported"),
        (b'{"Image": "busybox", "HostConfig": {"Binds": ["/h:relative"]}}', "mount path must be absolute"),
        (b'{"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}', "invalid restart policy"),
    ],
)
def test_malformed_api_bodies(clean: Daemon, body: bytes, message: str) -> None:
    response = clean.api("POST", "/containers/create", body=body, headers={"Content-Type": "application/json"})
    assert response.status == 400, response.body
    assert message in response.message
    _nothing_left(clean)


def test_unknown_container_and_bad_queries(clean: Daemon) -> None:
    assert clean.api("POST", "/containers/nope/start").status == 404
    assert clean.api("GET", "/containers/json", query={"filters": "{bad"}).status == 400
    assert clean.api("POST", "/nope").status == 404
    result = clean.corral("logs", "nope")
    assert result.returncode == 1 and "No such container: nope" in result.stderr

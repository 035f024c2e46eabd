"""exec: a process inside a running container, through the docker CLI, docker-py, corral and the engine."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from harness import DOCKER, Daemon, engine_in_process, state_dir, wait_for

from supervisor.errors import Conflict
from supervisor.reactor.execs import ExecCommand, build_exec_spec, run_in_container
from supervisor.reactor.model import ContainerSpec

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

# Writes a file, then serves / on 127.0.0.1:8080 inside its own network namespace.
WEB = ["sh", "-c", "echo from-container > /made-by-init; exec httpd -f -p 8080 -h /"]


@pytest.fixture
def web(clean: Daemon) -> Iterator[Daemon]:
    started = clean.docker("run", "-d", "--name", "web", "--hostname", "webhost", "busybox", *WEB)
    assert started.returncode == 0, started.stderr
    yield clean


def _api_exec(d: Daemon, ref: str, body: dict[str, Any]) -> str:
    response = d.api("POST", f"/containers/{ref}/exec", json=body)
    assert response.status == 201, response.message
    return str(response.json()["Id"])


@needs_docker
def test_streams_and_exit_code(web: Daemon) -> None:
    result = web.docker("exec", "web", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "hi\n", "err\n")
    # An exec's output is the client's alone: it never reaches the container's log.
    assert "hi" not in web.docker("logs", "web").stdout


@needs_docker
def test_sees_the_container(web: Daemon) -> None:
    ps = web.docker("exec", "web", "ps", "-o", "pid,args")
    lines = ps.stdout.splitlines()
    assert lines[1].split(None, 1) == ["1", "httpd -f -p 8080 -h /"], ps.stdout
    script = "hostname; cat /made-by-init; wget -qO- http://127.0.0.1:8080/made-by-init"
    seen = web.docker("exec", "web", "sh", "-c", script)
    assert seen.stdout == "webhost\nfrom-container\nfrom-container\n", seen.stderr


def test_same_cgroup_and_namespaces_from_the_host(web: Daemon) -> None:
    exec_id = _api_exec(web, "web", {"Cmd": ["sleep", "30"]})
    assert web.api("POST", f"/exec/{exec_id}/start", json={"Detach": True}).status == 200
    info = web.api("GET", f"/exec/{exec_id}/json").json()
    assert info["Running"] is True and info["ExitCode"] is None and info["Pid"] > 0
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "sleep", "arguments": ["30"], "privileged": False}
    pid, init = info["Pid"], web.inspect("web")["State"]["Pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    for ns in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    # Killed with its container, and known as such afterwards until the container goes.
    assert web.docker("kill", "web").returncode == 0
    wait_for(lambda: web.api("GET", f"/exec/{exec_id}/json").json()["Running"] is False)
    assert web.api("GET", f"/exec/{exec_id}/json").json()["ExitCode"] == 137


@needs_docker
def test_user_workdir_and_env(web: Daemon) -> None:
    result = web.docker(
        "exec", "-u", "nobody", "-w", "/tmp", "-e", "FOO=bar", "web", "sh", "-c", 'id -un; pwd; echo "$FOO $HOME"'
    )
    assert result.stdout == "nobody\n/tmp\nbar /home\n", result.stderr
    env = web.docker("exec", "web", "env").stdout.splitlines()
    assert "HOSTNAME=webhost" in env and "HOME=/root" in env and any(v.startswith("PATH=") for v in env)
    denied = web.docker("exec", "-u", "nobody", "-w", "/root", "web", "true")
    assert denied.returncode == 126 and "permission denied" in denied.stdout


@needs_docker
def test_not_found_and_not_executable(web: Daemon) -> None:
    missing = web.docker("exec", "web", "nosuch")
    assert missing.returncode == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in missing.stdout
    not_executable = web.docker("exec", "web", "/etc/passwd")
    assert not_executable.returncode == 126 and "permission denied" in not_executable.stdout
    info = web.api("GET", "/containers/web/json").json()
    assert info["State"]["Running"] is True


@needs_docker
def test_refused_for_a_stopped_or_unknown_container(clean: Daemon) -> None:
    assert clean.docker("create", "--name", "idle", "busybox", "true").returncode == 0
    refused = clean.docker("exec", "idle", "true")
    full_id = clean.inspect("idle")["Id"]
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"Error response from daemon: Container {full_id} is not running"
    response = clean.api("POST", "/containers/idle/exec", json={"Cmd": ["true"]})
    assert response.status == 409
    assert clean.api("POST", "/containers/nope/exec", json={"Cmd": ["true"]}).status == 404
    assert clean.api("GET", "/exec/nope/json").message == "No such exec instance: nope"


def test_bad_bodies(web: Daemon) -> None:
    cases = [
        ({"Cmd": []}, "No exec command specified"),
        ({"Cmd": "ls"}, "invalid Cmd: expected a list of strings"),
        ({"Cmd": ["ls"], "Tty": "yes"}, "invalid Tty: expected a boolean, got str"),
        ({"Cmd": ["ls"], "Privileged": True}, "Privileged is not supported by corral yet"),
        ({"Cmd": ["ls"], "WorkingDir": "tmp"}, "must be an absolute path"),
        ({"Cmd": ["ls"], "ConsoleSize": [1]}, "invalid ConsoleSize"),
    ]
    for body, message in cases:
        response = web.api("POST", "/containers/web/exec", json=body)
        assert response.status == 400 and message in response.message, (body, response.message)


@needs_docker
def test_stdin(web: Daemon) -> None:
    echoed = web.docker("exec", "-i", "web", "cat", input="in\n")
    assert (echoed.returncode, echoed.stdout) == (0, "in\n"), echoed.stderr
    counted = web.corral("exec", "-i", "web", "wc", "-c", input=b"12345")
    assert (counted.returncode, counted.stdout.strip()) == (0, "5"), counted.stderr


@needs_docker
def test_interactive_terminal(web: Daemon) -> None:
    plain = web.docker("exec", "-t", "web", "tty")
    assert plain.returncode == 0 and plain.stdout.replace("\r", "") == "/dev/pts/0\n"
    session = subprocess.run(
        ["script", "-qec", "stty cols 100 rows 30; docker exec -it web sh", "/dev/null"],
        input="stty size\necho typed-$((40+2))\nexit 5\n",
        env=web.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert session.returncode == 5, session.stdout + session.stderr
    assert "typed-42" in session.stdout
    assert "30 100" in session.stdout


def test_corral_cli(web: Daemon) -> None:
    result = web.corral("exec", "-e", "A=1", "web", "sh", "-c", "echo $A; echo e >&2; exit 4")
    assert (result.returncode, result.stdout, result.stderr) == (4, "1\n", "e\n")
    assert web.corral("exec", "web", "nosuch").returncode == 127
    assert web.corral("exec", "-d", "web", "sleep", "1").returncode == 0
    refused = web.corral("exec", "nope", "true")
    assert refused.returncode == 1 and "No such container: nope" in refused.stderr


def test_docker_py_exec_run(web: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{web.socket}", version="1.41")
    try:
        container = client.containers.get("web")
        assert tuple(container.exec_run("hostname")) == (0, b"webhost\n")
        code, (out, err) = container.exec_run(["sh", "-c", "echo o; echo e >&2; exit 2"], demux=True)
        assert (code, out, err) == (2, b"o\n", b"e\n")
        assert container.exec_run("pwd", workdir="/tmp", user="nobody").output == b"/tmp\n"
    finally:
        client.close()


@needs_docker
def test_exec_running_when_its_container_is_removed(web: Daemon) -> None:
    session = subprocess.Popen(
        [DOCKER or "docker", "exec", "web", "sh", "-c", "echo started; exec sleep 100"],
        env=web.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == "started\n"
        assert web.docker("rm", "-f", "web").returncode == 0
        session.wait(timeout=10)
    finally:
        session.kill()
        session.wait()
    # Nothing of the exec is left: the session-wide leak check covers processes, cgroups and mounts.
    assert web.docker("ps", "-a", "-q").stdout == ""


def test_launcher_leaves_after_execs_of_a_lost_daemon(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    assert d.corral("run", "-d", "--name", "busy", "busybox", "sleep", "100").returncode == 0
    assert d.corral("exec", "-d", "busy", "sleep", "100").returncode == 0
    assert d.corral("exec", "busy", "true").returncode == 0
    d.kill9()
    d.start()
    assert d.corral("exec", "busy", "true").returncode == 0
    assert d.corral("rm", "-f", "busy").returncode == 0
    # The teardown fails if the launcher does not exit once the daemon stops.


# -- the engine's primitive, in process ------------------------------------------


async def test_exec_right_after_the_start_of_a_prepared_container() -> None:
    # The start is the daemon's own go byte: an exec can reach the launcher before the child's
    # EXECUTING does, and must wait for it rather than find the container not running.
    with state_dir() as base:
        async with engine_in_process(base) as engine:
            for _ in range(10):
                container = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("sleep", "100")))
                while container.prepared is None or not container.prepared.ready:
                    await trio.sleep(0.01)
                await engine.start(container.id)
                result = await run_in_container(engine, container, ["true"], timeout=5)
                assert result.exit_code == 0
                await engine.remove(container.id, force=True)


async def test_run_in_container() -> None:
    with state_dir() as base:
        async with engine_in_process(base) as engine:
            container = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("sleep", "100")))
            await engine.start(container.id)

            result = await run_in_container(engine, container, ["sh", "-c", "echo out; exit 4"], timeout=5)
            assert (result.exit_code, result.output, result.timed_out) == (4, "out\n", False)

            started = time.monotonic()
            result = await run_in_container(engine, container, ["sleep", "10"], timeout=0.5)
            assert result.timed_out and result.exit_code == -1
            assert time.monotonic() - started < 1.5
            assert container.cgroup is not None
            assert container.cgroup.pids() == [container.state.pid]

            long = await run_in_container(
                engine, container, ["sh", "-c", "yes | head -c 10000"], timeout=5, output_limit=10
            )
            assert long.output == "y\ny\ny\ny\ny\n..."
            missing = await run_in_container(engine, container, ["nosuch"], timeout=5)
            assert missing.exit_code == 127 and "executable file not found" in missing.output

            # A background child holding stdout open does not hold the probe.
            started = time.monotonic()
            detached = await run_in_container(engine, container, ["sh", "-c", "sleep 30 & echo bg"], timeout=5)
            assert detached == type(detached)(0, "bg\n", False)
            assert time.monotonic() - started < 2

            await engine.kill(container.id)
            await container.wait_until(lambda c: not c.state.running)
            with pytest.raises(Conflict, match="is not running"):
                await run_in_container(engine, container, ["true"], timeout=5)


async def test_a_launcher_takes_only_a_pidfd_for_a_container_it_does_not_know() -> None:
    # The pidfd a daemon lends for a container whose launcher died (test_live_restore.py has the
    # real case); a descriptor that is no pidfd gets the launcher's "not running", nothing else.
    with state_dir() as base:
        async with engine_in_process(base) as engine:
            container = await engine.create(ContainerSpec(image="busybox", image_id="", cmd=("sleep", "100")))
            await engine.start(container.id)
            spec = build_exec_spec(container, ExecCommand(argv=("true",)), "e" * 64, detach=True)
            unknown = dataclasses.replace(spec, container_id="f" * 64)
            with open("/dev/null", "rb") as not_a_pidfd:
                with pytest.raises(Conflict, match="is not running"):
                    await engine.launcher.exec(unknown, container_pidfd=not_a_pidfd.fileno())
            with pytest.raises(Conflict, match="is not running"):
                await engine.launcher.exec(unknown)


# -- pure parts ------------------------------------------------------------------


def test_env_merge_and_create_body() -> None:
    from supervisor.api.execs import parse_exec_create
    from supervisor.reactor.execs import merge_env

    assert merge_env(["PATH=/bin", "A=1", "B=2"], ["A=3", "B"], ["C="]) == ("PATH=/bin", "A=3", "C=")
    config = parse_exec_create({"Cmd": ["ls", "-l"], "AttachStdout": True, "Tty": True, "ConsoleSize": [0, 0]})
    assert config.command.argv == ("ls", "-l") and config.command.tty and not config.command.stdin
    assert config.attach_stdout and not config.attach_stderr and config.console_size is None

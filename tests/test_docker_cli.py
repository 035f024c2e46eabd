"""Done-when 3: the real docker CLI (v28) drives corral unmodified."""

from __future__ import annotations

import json
import subprocess

import pytest
from harness import DOCKER, Daemon, wait_for

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def test_run_exit_code_and_streams(clean: Daemon) -> None:
    result = clean.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert clean.docker("ps", "-a", "-q").stdout == ""


def test_run_isolation_through_docker(clean: Daemon) -> None:
    result = clean.docker("run", "--rm", "--hostname", "dock", "busybox", "sh", "-c", "echo $$; hostname")
    assert result.stdout == "1\ndock\n", result.stderr


def test_detached_web_server_lifecycle(clean: Daemon) -> None:
    started = clean.docker("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo serving; exec httpd -f -p 8080")
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    assert len(container_id) == 64

    ps = clean.docker("ps")
    lines = ps.stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert container_id[:12] in lines[1] and "web" in lines[1] and "Up " in lines[1]

    wait_for(lambda: clean.docker("logs", "web").stdout == "serving\n")
    inspect = json.loads(clean.docker("inspect", "web").stdout)[0]
    assert inspect["State"]["Running"] is True and inspect["Name"] == "/web"

    # httpd as pid 1 has no SIGTERM handler, so (as under Docker) stop waits out -t then kills.
    stop = clean.docker("stop", "-t", "1", "web")
    assert stop.returncode == 0 and stop.stdout.strip() == "web"
    exited = clean.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert exited.startswith("web Exited (137)")
    assert clean.docker("ps", "-q").stdout == ""

    assert clean.docker("rm", "web").returncode == 0
    assert clean.docker("ps", "-a", "-q").stdout == ""


def test_wait_kill_and_force_remove(clean: Daemon) -> None:
    # pid 1 only gets the signals it handles, as under Docker.
    clean.docker(
        "run", "-d", "--name", "sleeper", "busybox", "sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.05; done"
    )
    waiter = subprocess.Popen([DOCKER, "wait", "sleeper"], env=clean.env, stdout=subprocess.PIPE, text=True)
    try:
        assert clean.docker("kill", "-s", "USR1", "sleeper").returncode == 0
        out, _ = waiter.communicate(timeout=10)
    finally:
        waiter.kill()
    assert out.strip() == "7"
    clean.docker("start", "sleeper")
    refused = clean.docker("rm", "sleeper")
    assert refused.returncode != 0 and "cannot remove a running container" in refused.stderr
    assert clean.docker("rm", "-f", "sleeper").returncode == 0


def test_stdin_and_follow(clean: Daemon) -> None:
    echoed = clean.docker("run", "-i", "--rm", "busybox", "cat", input="hello\n")
    assert echoed.returncode == 0 and echoed.stdout == "hello\n", echoed.stderr
    clean.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done")
    follow = clean.docker("logs", "-f", "-t", "ticker", timeout=20)
    lines = follow.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["1", "2", "3"]
    assert all(line[:4].isdigit() and "T" in line.split(" ", 1)[0] for line in lines)
    tail = clean.docker("logs", "--tail", "1", "ticker")
    assert tail.stdout == "3\n"


def test_images_and_version(clean: Daemon) -> None:
    images = clean.docker("images").stdout.splitlines()
    assert images[1].split()[:2] == ["busybox", "latest"]
    version = clean.docker("version", "--format", "{{.Server.APIVersion}}")
    assert version.stdout.strip() == "1.41"
    info = clean.docker("info", "--format", "{{.CgroupDriver}} {{.OSType}}")
    assert info.stdout.strip() == "cgroupfs linux", info.stderr


def test_tty_and_interactive_terminal(clean: Daemon) -> None:
    plain_tty = clean.docker("run", "-t", "--rm", "busybox", "sh", "-c", "tty; echo hi")
    assert plain_tty.returncode == 0 and plain_tty.stdout.replace("\r", "") == "/dev/console\nhi\n"
    # `script` gives the docker CLI a real terminal; the typed lines go through the pty.
    session = subprocess.run(
        ["script", "-qec", "stty cols 100 rows 30; docker run -it --rm busybox sh", "/dev/null"],
        input="stty size\necho typed-$((40+2))\nexit 5\n",
        env=clean.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert session.returncode == 5, session.stdout + session.stderr
    assert "typed-42" in session.stdout
    assert "30 100" in session.stdout

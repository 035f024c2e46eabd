"""`docker events`, docker-py's `events()` and `corral events` against a real daemon."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from typing import IO, Any

import pytest
from harness import CORRAL, DOCKER, REPO, Daemon

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")

MESSAGE_KEYS = ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]


def read_lines(stream: IO[str], count: int = 0, until: str = "", timeout: float = 15) -> list[str]:
    """Lines from a pipe: `count` of them, or up to one containing `until`; give up after `timeout` seconds.

    Reads the descriptor itself: a text wrapper's buffer would hide lines from select().
    """
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not (count and len(lines) >= count) and not (until and lines and until in lines[-1]):
            if b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                lines.append(line.decode() + "\n")
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
    return lines


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def now() -> str:
    """A time the docker CLI passes through as it is (Unix seconds with a fraction)."""
    return f"{time.time():.9f}"


@needs_docker
def test_docker_events_stream_a_run(clean: Daemon) -> None:
    since = now()
    assert DOCKER is not None
    watcher = subprocess.Popen(
        [DOCKER, "events", "--since", since, "--filter", "container=ev1", "--format", "{{json .}}"],
        env=clean.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = clean.docker("run", "--name", "ev1", "--rm", "-l", "tier=test", "busybox", "sh", "-c", "exit 3")
        assert run.returncode == 3, run.stderr
        lines = read_lines(watcher.stdout, until='"destroy"')  # type: ignore[arg-type]
    finally:
        stop(watcher)
    # dockerd also sends `attach` (the CLI attaches) and network events; corral has neither yet.
    messages = [m for m in map(json.loads, lines) if m["Action"] != "attach"]
    assert [m["Action"] for m in messages] == ["create", "start", "die", "destroy"]
    container_id = messages[0]["id"]
    assert len(container_id) == 64
    for message in messages:
        assert list(message) == MESSAGE_KEYS
        assert message["status"] == message["Action"] and message["Type"] == "container"
        assert message["id"] == message["Actor"]["ID"] == container_id
        assert message["from"] == "busybox" and message["scope"] == "local"
        assert isinstance(message["time"], int) and isinstance(message["timeNano"], int)
        assert message["time"] == message["timeNano"] // 1_000_000_000
        attributes = message["Actor"]["Attributes"]
        assert attributes["image"] == "busybox" and attributes["name"] == "ev1" and attributes["tier"] == "test"
    assert messages[2]["Actor"]["Attributes"]["exitCode"] == "3"
    times = [m["timeNano"] for m in messages]
    assert times == sorted(times)


@needs_docker
def test_docker_events_since_until_replays_and_exits(clean: Daemon) -> None:
    since = now()
    assert clean.docker("run", "-d", "--name", "ev2", "busybox", "sleep", "30").returncode == 0
    assert clean.docker("kill", "ev2").returncode == 0
    assert clean.docker("wait", "ev2").stdout.strip() == "137"
    until = now()
    replay = clean.docker("events", "--since", since, "--until", until, "--filter", "container=ev2", timeout=10)
    assert replay.returncode == 0, replay.stderr
    lines = replay.stdout.splitlines()
    # Docker's default line: local time, type, action, id, sorted attributes.
    assert [line.split()[2] for line in lines] == ["create", "start", "kill", "die"], lines
    kill, die = lines[2], lines[3]
    assert kill.split()[1] == "container" and len(kill.split()[3]) == 64
    assert kill.endswith("(image=busybox, name=ev2, signal=9)"), kill
    assert die.endswith("(exitCode=137, image=busybox, name=ev2)"), die
    assert lines[0][:4].isdigit() and lines[0].split()[0].count(":") >= 2
    # Filters narrow the replay: one action only.
    dies = clean.docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "-f",
        "container=ev2",
        "-f",
        "event=die",
        "--format",
        "{{.Action}}",
    )
    assert dies.stdout == "die\n", dies.stderr
    # `--since 0 --until 1`: nothing that old, and it ends at once.
    assert clean.docker("events", "--since", "0", "--until", "1", timeout=10).stdout == ""


@needs_docker
def test_docker_events_refuses_bad_requests(clean: Daemon) -> None:
    bad_filter = clean.docker("events", "--until", "1", "--filter", "evnt=die", timeout=10)
    assert bad_filter.returncode != 0 and "invalid filter 'evnt'" in bad_filter.stderr
    backwards = clean.docker("events", "--since", "20", "--until", "10", timeout=10)
    assert backwards.returncode != 0 and "cannot be after" in backwards.stderr
    response = clean.api("GET", "/events", query={"since": "yesterday"})
    assert response.status == 400 and "invalid since timestamp" in response.message


def test_corral_events(clean: Daemon) -> None:
    since = now()
    watcher = subprocess.Popen(
        [*CORRAL, "events", "--since", since, "-f", "container=ev3", "-f", "event=start", "--format", "json"],
        env=clean.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert clean.corral("run", "--name", "ev3", "busybox", "true").returncode == 0
        started = read_lines(watcher.stdout, 1)  # type: ignore[arg-type]
    finally:
        stop(watcher)
    assert len(started) == 1
    message = json.loads(started[0])
    assert list(message) == MESSAGE_KEYS and message["Action"] == "start"
    assert message["Actor"]["Attributes"] == {"image": "busybox", "name": "ev3"}

    until = now()
    replay = clean.corral("events", "--since", since, "--until", until, "--filter", "container=ev3")
    assert replay.returncode == 0, replay.stderr
    lines = replay.stdout.splitlines()
    assert [line.split()[1:3] for line in lines] == [["container", a] for a in ("create", "start", "die")]
    assert lines[2].endswith(f"{message['id']} (exitCode=0, image=busybox, name=ev3)")
    # A filter the daemon does not know is an error, not a silent match-all.
    bad = clean.corral("events", "--until", until, "-f", "colour=red")
    assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr


def test_docker_py_events(clean: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.socket}", version="1.41")
    try:
        # Live: the stream is subscribed once events() has the response head.
        live = client.events(decode=True, filters={"container": "ev4"}, until=time.time() + 60)
        since = int(time.time())
        client.containers.run("busybox", ["true"], name="ev4", remove=True)
        seen: list[dict[str, Any]] = []
        for event in live:
            seen.append(event)
            if event["Action"] == "destroy":
                break
        live.close()
        # Replayed: an `until` already past ends the stream.
        until = time.time()
        replayed = list(client.events(since=since, until=until, filters={"container": "ev4"}, decode=True))
    finally:
        client.close()
    assert [e["Action"] for e in seen] == ["create", "start", "die", "destroy"]
    assert all(e["Actor"]["Attributes"]["name"] == "ev4" and e["Type"] == "container" for e in seen)
    assert seen[2]["Actor"]["Attributes"]["exitCode"] == "0"
    assert replayed == seen

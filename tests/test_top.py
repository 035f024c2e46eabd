"""top: the host's ps, narrowed to the container's processes (moby's way)."""

from __future__ import annotations

import pytest
from harness import DOCKER, Daemon, wait_for

from supervisor.reactor.top import TopFailed, parse_ps_output

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


@needs_docker
def test_docker_top_lists_the_container_processes_and_no_others(clean: Daemon) -> None:
    assert clean.docker("run", "-d", "--name", "topped", "busybox", "sh", "-c", "sleep 601 & sleep 602").returncode == 0
    assert clean.docker("run", "-d", "--name", "other", "busybox", "sleep", "603").returncode == 0
    assert clean.docker("exec", "-d", "topped", "sleep", "604").returncode == 0
    listed = clean.api("GET", "/containers/topped/top")
    assert listed.ok, listed.message
    body = listed.json()
    assert body["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    wait_for(lambda: len(clean.api("GET", "/containers/topped/top").json()["Processes"]) == 3)
    commands = sorted(row[-1] for row in clean.api("GET", "/containers/topped/top").json()["Processes"])
    assert commands == ["sleep 601", "sleep 602", "sleep 604"]
    assert str(clean.inspect("topped")["State"]["Pid"]) in [row[1] for row in body["Processes"]]

    shown = clean.docker("top", "topped", "-o", "pid,args")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n")[0].split() == ["PID", "COMMAND"]
    assert "sleep 603" not in shown.stdout and "sleep 602" in shown.stdout
    ours = clean.corral("top", "topped")
    assert ours.returncode == 0 and "sleep 604" in ours.stdout and "sleep 603" not in ours.stdout

    # Bad input: ps arguments without a PID column, ps refusing its options, a stopped container.
    no_pid = clean.docker("top", "topped", "-o", "comm")
    assert no_pid.returncode == 1 and "Couldn't find PID field" in no_pid.stderr
    bad = clean.api("GET", "/containers/topped/top", query={"ps_args": "--no-such-option"})
    assert bad.status == 500 and bad.message.startswith("ps:")
    clean.docker("kill", "topped")
    stopped = clean.docker("top", "topped")
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    assert clean.docker("rm", "-f", "topped", "other").returncode == 0


def test_ps_output_parsing() -> None:
    output = (
        "UID   PID  PPID  LWP  C NLWP CMD\n"
        "root    7     1    7  0    2 sh -c sleep 1\n"
        "root    -     -    8  0    - -\n"
        "root    9     1    9  0    1 other thing\n"
        "root    -     -   10  0    - -\n"
        "\n"
    )
    listed = parse_ps_output(output, {7})
    assert listed.titles == ["UID", "PID", "PPID", "LWP", "C", "NLWP", "CMD"]
    assert listed.processes == [
        ["root", "7", "1", "7", "0", "2", "sh -c sleep 1"],
        ["root", "-", "-", "8", "0", "-", "-"],
    ]
    with pytest.raises(TopFailed, match="Couldn't find PID field"):
        parse_ps_output("COMMAND\nsleep\n", {7})
    with pytest.raises(TopFailed, match="Unexpected pid"):
        parse_ps_output("PID CMD\nx sleep\n", {7})

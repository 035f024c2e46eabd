"""pause/unpause: the container's cgroup frozen and thawed, with Docker's rules and messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import DOCKER, Daemon, wait_for

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _frozen(d: Daemon, name: str) -> bool:
    """What the kernel says: cgroup.events of the container's cgroup in the unified hierarchy."""
    container_id = d.inspect(name)["Id"]
    events = Path("/sys/fs/cgroup/unified") / d.cgroup_parent / container_id / "cgroup.events"
    if not events.exists():
        events = Path("/sys/fs/cgroup") / d.cgroup_parent / container_id / "cgroup.events"
    return "frozen 1" in events.read_text()


@needs_docker
def test_docker_pause_and_unpause(clean: Daemon) -> None:
    since = time.time()
    script = "trap 'exit 7' TERM; while :; do sleep 0.05; done"
    assert clean.docker("run", "-d", "--name", "held", "busybox", "sh", "-c", script).returncode == 0
    assert clean.docker("pause", "held").returncode == 0
    state = clean.inspect("held")["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    assert _frozen(clean, "held")
    assert clean.docker("ps", "--format", "{{.Status}}").stdout.strip().endswith("(Paused)")

    again = clean.docker("pause", "held")
    assert again.returncode == 1 and "is already paused" in again.stderr
    in_paused = clean.docker("exec", "held", "true")
    assert in_paused.returncode != 0 and "is paused, unpause the container before exec" in in_paused.stderr
    start_paused = clean.docker("start", "held")
    assert (
        start_paused.returncode == 1 and "cannot start a paused container, try unpause instead" in start_paused.stderr
    )

    assert clean.docker("unpause", "held").returncode == 0
    assert clean.inspect("held")["State"]["Status"] == "running" and not _frozen(clean, "held")
    not_paused = clean.docker("unpause", "held")
    assert not_paused.returncode == 1 and "is not paused" in not_paused.stderr

    # A stop of a paused container: the signal is sent, then the container thawed to take it.
    assert clean.docker("pause", "held").returncode == 0
    assert clean.docker("stop", "held").returncode == 0
    state = clean.inspect("held")["State"]
    assert (state["Status"], state["ExitCode"], state["Paused"]) == ("exited", 7, False)
    stopped = clean.docker("pause", "held")
    assert stopped.returncode == 1 and "is not running" in stopped.stderr

    events = clean.api(
        "GET",
        "/events",
        query={"since": f"{since:.9f}", "until": f"{time.time():.9f}", "filters": json.dumps({"container": ["held"]})},
    )
    actions = [json.loads(line)["Action"] for line in events.body.splitlines() if line.strip()]
    # The stop's thaw is an unpause too, as under moby.
    assert [a for a in actions if a in ("pause", "unpause")] == ["pause", "unpause", "pause", "unpause"]
    assert clean.docker("rm", "held").returncode == 0


def test_kill_and_rm_of_a_paused_container(clean: Daemon) -> None:
    for name in ("killed", "removed"):
        assert clean.corral("run", "-d", "--name", name, "busybox", "sleep", "600").returncode == 0
        assert clean.corral("pause", name).returncode == 0
    assert clean.corral("kill", "killed").returncode == 0
    assert clean.inspect("killed")["State"]["ExitCode"] == 137
    refused = clean.corral("rm", "removed")
    assert refused.returncode != 0
    assert clean.corral("rm", "-f", "removed", "killed").returncode == 0
    assert clean.cgroups_left() == []


def test_a_paused_container_is_no_unhealthy_one(clean: Daemon) -> None:
    health = ["--health-cmd", "true", "--health-interval", "100ms", "--health-retries", "1"]
    assert clean.corral("run", "-d", "--name", "probed", *health, "busybox", "sleep", "600").returncode == 0
    wait_for(lambda: clean.inspect("probed")["State"]["Health"]["Status"] == "healthy")
    assert clean.corral("pause", "probed").returncode == 0
    time.sleep(0.6)  # six probe intervals: each skipped, none failed
    state = clean.inspect("probed")["State"]
    assert state["Health"]["Status"] == "healthy" and state["Health"]["FailingStreak"] == 0
    assert clean.corral("unpause", "probed").returncode == 0
    assert clean.corral("rm", "-f", "probed").returncode == 0


def test_a_pause_outlives_a_daemon_crash(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    assert d.corral("run", "-d", "--name", "asleep", "busybox", "sleep", "600").returncode == 0
    assert d.corral("pause", "asleep").returncode == 0
    d.kill9()
    d.start()
    assert d.inspect("asleep")["State"]["Status"] == "paused" and _frozen(d, "asleep")
    assert d.corral("unpause", "asleep").returncode == 0
    assert not _frozen(d, "asleep")
    assert d.corral("rm", "-f", "asleep").returncode == 0

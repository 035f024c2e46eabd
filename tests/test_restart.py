"""Restart policies with Docker's semantics, through the docker CLI and across daemon restarts."""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness import DOCKER, Daemon, wait_for

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _state(d: Daemon, name: str) -> dict[str, object]:
    return d.inspect(name)["State"]


def test_always_restarts_after_a_crash(clean: Daemon) -> None:
    clean.docker("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "300")
    first = _state(clean, "phoenix")["Pid"]
    died = time.monotonic()
    assert int(first) > 0  # kill(0) would signal our own process group
    os.kill(int(first), signal.SIGKILL)  # a crash, not a stop through the API
    wait_for(lambda: _state(clean, "phoenix")["Pid"] not in (0, first), timeout=5)
    back = time.monotonic() - died
    info = clean.inspect("phoenix")
    assert info["State"]["Status"] == "running" and info["RestartCount"] == 1
    # The default first backoff is Docker's 100 ms.
    assert back < 2.0, back
    assert "Up " in clean.docker("ps", "--format", "{{.Status}}", "--filter", "name=phoenix").stdout


def test_on_failure_counts_and_gives_up(clean: Daemon) -> None:
    clean.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    wait_for(lambda: clean.inspect("flaky")["RestartCount"] == 2 and _state(clean, "flaky")["Status"] == "exited")
    time.sleep(1.0)  # the third exit must not be followed by a third restart
    info = clean.inspect("flaky")
    assert info["RestartCount"] == 2 and info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
    assert clean.docker("logs", "flaky").stdout == "run\nrun\nrun\n"
    clean.docker("run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true")
    wait_for(lambda: _state(clean, "fine")["Status"] == "exited")
    time.sleep(0.5)
    assert clean.inspect("fine")["RestartCount"] == 0


def test_restarting_shows_in_ps_and_stop_cancels_it(clean: Daemon) -> None:
    clean.docker("run", "-d", "--name", "looper", "--restart", "always", "busybox", "sh", "-c", "exit 1")
    # Backoff doubles (0.1, 0.2, 0.4, ...): soon it waits long enough to be seen restarting.
    status = wait_for(
        lambda: (lambda s: s if s.startswith("Restarting (1)") else None)(
            clean.docker("ps", "--format", "{{.Status}}", "--filter", "name=looper").stdout.strip()
        )
    )
    assert status.endswith("ago")
    assert _state(clean, "looper")["Restarting"] is True
    assert clean.docker("stop", "looper").returncode == 0
    count = clean.inspect("looper")["RestartCount"]
    time.sleep(1.0)
    info = clean.inspect("looper")
    assert info["State"]["Status"] == "exited" and info["RestartCount"] == count


def test_manual_stop_is_never_restarted_and_start_resets(clean: Daemon) -> None:
    clean.docker("run", "-d", "--name", "held", "--restart", "always", "busybox", "sleep", "300")
    clean.docker("stop", "-t", "0", "held")
    time.sleep(0.5)
    assert _state(clean, "held")["Status"] == "exited"
    assert clean.docker("start", "held").returncode == 0
    assert _state(clean, "held")["Status"] == "running" and clean.inspect("held")["RestartCount"] == 0
    # A kill through the API is a manual stop too.
    clean.docker("kill", "held")
    time.sleep(0.5)
    assert _state(clean, "held")["Status"] == "exited"


def test_remove_while_restarting(clean: Daemon) -> None:
    clean.docker("run", "-d", "--name", "gone", "--restart", "always", "busybox", "sh", "-c", "exit 2")
    wait_for(lambda: _state(clean, "gone")["Status"] == "restarting")
    assert clean.docker("rm", "-f", "gone").returncode == 0
    assert clean.docker("ps", "-aq", "--filter", "name=gone").stdout == ""


def test_policies_across_a_daemon_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.docker("run", "-d", "--name", "always-stopped", "--restart", "always", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "unless-stopped", "--restart", "unless-stopped", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "crashes-away", "--restart", "always", "busybox", "sleep", "300")
    d.docker("stop", "-t", "0", "always-stopped", "unless-stopped")
    crashing = int(_state(d, "crashes-away")["Pid"])
    d.kill9()
    assert crashing > 0
    os.kill(crashing, signal.SIGKILL)  # dies while no daemon watches
    time.sleep(0.3)
    d.start()
    # Docker: `always` comes back at daemon start even after a manual stop; `unless-stopped` does not.
    wait_for(lambda: _state(d, "always-stopped")["Status"] == "running")
    assert _state(d, "unless-stopped")["Status"] == "exited"
    wait_for(lambda: _state(d, "crashes-away")["Status"] == "running")
    assert d.inspect("crashes-away")["RestartCount"] == 1


def test_docker_restart(clean: Daemon) -> None:
    clean.docker(
        "run",
        "-d",
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done",
    )
    first = _state(clean, "again")["Pid"]
    assert clean.docker("restart", "-t", "2", "again").returncode == 0
    state = _state(clean, "again")
    assert state["Status"] == "running" and state["Pid"] != first
    wait_for(lambda: clean.docker("logs", "again").stdout == "up\nup\n")


def test_shutdown_containers_flag(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    d.start("--shutdown-containers")
    d.docker(
        "run",
        "-d",
        "--name",
        "polite",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    )
    pid = int(_state(d, "polite")["Pid"])
    d.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    d.start()
    # Stopped by the shutdown, not by hand: the policy brings it back with the daemon.
    wait_for(lambda: _state(d, "polite")["Status"] == "running")

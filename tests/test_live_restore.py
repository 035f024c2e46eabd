"""Done-when 7: the daemon dies, containers and their logs carry on, a new daemon re-adopts them."""

from __future__ import annotations

import os
import time

from harness import Daemon, wait_for


def _numbers(text: str) -> list[int]:
    return [int(line) for line in text.split()]


def test_kill_9_daemon_keeps_container_and_logs(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    script = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done"
    assert d.corral("run", "-d", "--name", "counter", "busybox", "sh", "-c", script).returncode == 0
    before = d.inspect("counter")["State"]
    launcher = d.launcher_pid()
    assert launcher is not None

    d.kill9()
    # Nobody serves the socket now, but the launcher and the container carry on.
    time.sleep(0.5)
    os.kill(launcher, 0)
    os.kill(before["Pid"], 0)

    d.start()
    after = d.inspect("counter")["State"]
    assert after["Running"] is True
    assert after["Pid"] == before["Pid"]
    assert d.launcher_pid() == launcher

    wait_for(lambda: len(_numbers(d.corral("logs", "counter").stdout)) > 40)
    assert d.corral("stop", "-t", "0", "counter").returncode == 0
    numbers = _numbers(d.corral("logs", "counter").stdout)
    # Every line, in order, across the daemon's absence.
    assert numbers == list(range(len(numbers)))
    assert d.inspect("counter")["State"]["Status"] == "exited"


def test_exit_while_daemon_is_away_is_recorded(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.corral("run", "-d", "--name", "brief", "busybox", "sh", "-c", "sleep 0.5; echo done; exit 42")
    d.kill9()
    time.sleep(1.0)
    d.start()
    state = d.inspect("brief")["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 42
    assert d.corral("logs", "brief").stdout == "done\n"


def test_daemon_sigterm_leaves_containers_running(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.corral("run", "-d", "--name", "stays", "busybox", "sleep", "60")
    pid = d.inspect("stays")["State"]["Pid"]
    d.stop()
    os.kill(pid, 0)
    d.start()
    assert d.inspect("stays")["State"]["Pid"] == pid
    assert d.corral("kill", "stays").returncode == 0
    assert d.corral("wait", "stays").stdout.strip() == "137"

"""Done-when 7: the daemon dies, containers and their logs carry on, a new daemon re-adopts them."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness import DOCKER, Daemon, wait_for


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


def test_launcher_killed_daemon_adopts_its_containers(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    script = "i=0; while [ $i -lt 60 ]; do echo $i; i=$((i+1)); sleep 0.02; done; exit 42"
    d.corral("run", "-d", "--name", "orphan", "busybox", "sh", "-c", script)
    d.corral(
        "run",
        "-d",
        "--name",
        "stopped-later",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.05; done",
    )
    launcher = d.launcher_pid()
    assert launcher is not None
    os.kill(launcher, signal.SIGKILL)

    # The daemon is the orphans' subreaper: it sees the real exit code, and the log has every line.
    assert d.corral("wait", "orphan", timeout=20).stdout.strip() == "42"
    assert _numbers(d.corral("logs", "orphan").stdout) == list(range(60))
    # Stopping still works through the pidfd; a new launcher serves new containers.
    assert d.corral("stop", "stopped-later").returncode == 0
    assert d.inspect("stopped-later")["State"]["ExitCode"] == 7
    fresh = d.corral("run", "--rm", "busybox", "echo", "new launcher")
    assert fresh.stdout == "new launcher\n", fresh.stderr
    assert d.launcher_pid() not in (None, launcher)


def test_exec_into_a_container_whose_launcher_died(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.corral("run", "-d", "--name", "survivor", "busybox", "sleep", "600")
    launcher = d.launcher_pid()
    assert launcher is not None
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: "container.orphaned" in d.log_path.read_text())

    # A new launcher enters it through the pidfd the daemon lends: output, exit code, stdin.
    ran = d.corral("exec", "survivor", "sh", "-c", "echo in $(hostname); exit 3")
    assert ran.returncode == 3 and ran.stdout == f"in {d.inspect('survivor')['Config']['Hostname']}\n", ran.stderr
    piped = d.corral("exec", "-i", "survivor", "cat", input=b"through stdin\n")
    assert piped.returncode == 0 and piped.stdout == "through stdin\n", piped.stderr
    assert d.corral("exec", "-d", "survivor", "sleep", "300").returncode == 0
    if DOCKER:
        via_docker = d.docker("exec", "survivor", "cat", "/etc/hostname")
        assert via_docker.returncode == 0 and via_docker.stdout.strip() == d.inspect("survivor")["Config"]["Hostname"]
    assert d.launcher_pid() not in (None, launcher)

    # The detached exec dies with the container; the new launcher reaps it.
    assert d.corral("rm", "-f", "survivor").returncode == 0
    missing = d.corral("exec", "survivor", "true")
    assert missing.returncode != 0 and "No such container" in missing.stderr


def test_corrupt_state_file_is_reported_and_skipped(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.corral("create", "--name", "damaged", "busybox", "true")
    d.corral("run", "-d", "--name", "healthy", "busybox", "sleep", "60")
    damaged = d.inspect("damaged")["Id"]
    pid = d.inspect("healthy")["State"]["Pid"]
    d.kill9()
    (d.root / "containers" / damaged / "config.json").write_text("{ not json")
    d.start()
    assert d.api("GET", f"/containers/{damaged}/json").status == 404
    assert d.inspect("healthy")["State"]["Pid"] == pid
    assert "container.state_unreadable" in d.log_path.read_text()


def test_a_container_created_just_before_a_crash_is_kept(fresh_daemon: Daemon) -> None:
    # The create answers before its config's fsync (a start waits for that): written and
    # renamed by then, so a daemon killed right after the answer still has it.
    d = fresh_daemon
    created = d.corral("create", "--name", "justmade", "busybox", "echo", "kept")
    assert created.returncode == 0, created.stderr
    d.kill9()
    d.start()
    assert d.inspect("justmade")["Id"] == created.stdout.strip()
    assert d.corral("start", "justmade").returncode == 0
    assert d.corral("wait", "justmade").stdout.strip() == "0"
    assert d.corral("logs", "justmade").stdout == "kept\n"
    d.corral("rm", "justmade")


def _parked_pid(d: Daemon, container_id: str) -> int:
    """The pid of `container_id`'s prepared process, once the launcher reports it parked."""
    log = d.run_dir / "launcher.log"
    wait_for(
        lambda: any(container_id in line and "container.prepared" in line for line in log.read_text().splitlines())
    )
    procs = next(Path("/sys/fs/cgroup").glob(f"**/{d.cgroup_parent}/{container_id}/cgroup.procs"))
    (pid,) = (int(line) for line in procs.read_text().split())
    return pid


def _started_but_stopped(d: Daemon, name: str) -> tuple[str, int]:
    """A container the daemon started (its go byte written) whose process has not yet read that byte."""
    container_id = d.corral("create", "--name", name, "busybox", "sh", "-c", "echo started; exec sleep 60").stdout
    container_id = container_id.strip()
    pid = _parked_pid(d, container_id)
    os.kill(pid, signal.SIGSTOP)
    # The start writes the go byte itself and answers before the process reads it (direct go).
    assert d.corral("start", name).returncode == 0
    return container_id, pid


def test_a_start_just_before_a_daemon_crash_goes_on(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id, pid = _started_but_stopped(d, "startedlast")
    d.kill9()
    # The launcher sees the daemon go before the process has read its go byte: the byte it adds behind
    # it does not undo the start. The new daemon's restore waits for the process to say which it did.
    threading.Timer(1.0, os.kill, (pid, signal.SIGCONT)).start()
    d.start()
    state = d.inspect("startedlast")["State"]
    assert (state["Running"], state["Pid"]) == (True, pid)
    assert wait_for(lambda: d.corral("logs", "startedlast").stdout) == "started\n"
    assert d.corral("rm", "-f", "startedlast").returncode == 0


def test_a_start_whose_state_the_crash_did_not_write_is_recovered(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id, pid = _started_but_stopped(d, "unwritten")
    d.kill9()
    # As if the daemon died between the go byte and the state file saying running.
    (d.root / "containers" / container_id / "state.json").unlink()
    os.kill(pid, signal.SIGCONT)
    d.start()
    state = d.inspect("unwritten")["State"]
    assert (state["Status"], state["Pid"]) == ("running", pid)
    assert "container.start_recovered" in d.log_path.read_text()
    assert wait_for(lambda: d.corral("logs", "unwritten").stdout) == "started\n"
    assert d.corral("stop", "-t", "1", "unwritten").returncode == 0
    assert d.inspect("unwritten")["State"]["Status"] == "exited"
    assert d.corral("rm", "unwritten").returncode == 0


def test_a_prepared_container_never_started_goes_with_its_daemon(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id = d.corral("create", "--name", "neverstarted", "busybox", "sleep", "60").stdout.strip()
    pid = _parked_pid(d, container_id)
    d.kill9()
    wait_for(lambda: not Path(f"/proc/{pid}").exists())
    d.start()
    assert d.inspect("neverstarted")["State"]["Status"] == "created"
    assert d.corral("start", "neverstarted").returncode == 0
    assert d.inspect("neverstarted")["State"]["Running"] is True
    assert d.corral("rm", "-f", "neverstarted").returncode == 0


def test_a_cgroup_half_made_or_half_removed_by_a_killed_daemon_is_swept(fresh_daemon: Daemon) -> None:
    # A daemon killed while it made (or removed) a cgroup leaves it in some hierarchies only: here
    # in two v1 ones and not the unified one, with a process inside; or in the unified one only.
    d = fresh_daemon
    d.kill9()
    root = Path("/sys/fs/cgroup")
    partial_v1 = [root / h / d.cgroup_parent / "half-v1" for h in ("cpu", "memory")]
    unified_only = root / "unified" / d.cgroup_parent / "half-unified"
    for directory in [*partial_v1, unified_only]:
        directory.mkdir(parents=True, exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        for directory in partial_v1:
            (directory / "cgroup.procs").write_text(str(sleeper.pid))
        d.start()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    for directory in [*partial_v1, unified_only]:
        assert not directory.exists()
    assert d.corral("run", "--rm", "busybox", "true").returncode == 0

"""The next container begun ahead (reactor/spare.py, launcher/spares.py): its ID, its cgroup and a
process in it, which the next create takes; and an `--rm` container's files deleted after its
removal was answered (reactor/remove.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from harness import DOCKER, SPARE_COMM, Daemon, process_comm, wait_for

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _spare(d: Daemon) -> tuple[str, int] | None:
    """(ID, pid) of the daemon's spare: the one process named corral-spare in a cgroup of its parent."""
    for procs in Path("/sys/fs/cgroup/memory").glob(f"{d.cgroup_parent}/*/cgroup.procs"):
        try:
            pids = [int(line) for line in procs.read_text().split()]
        except OSError:
            continue
        if len(pids) == 1 and process_comm(pids[0]) == SPARE_COMM:
            return procs.parent.name, pids[0]
    return None


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_create_takes_the_spare_and_a_new_one_follows(clean: Daemon) -> None:
    spare_id, spare_pid = wait_for(lambda: _spare(clean))
    # Made ahead, it already has a network namespace of its own, with nothing of a container in it.
    assert _netns(spare_pid) != _netns(os.getpid())
    result = clean.corral("run", "-d", "--name", "fromspare", "--memory", "32m", "busybox", "sleep", "60")
    assert result.returncode == 0, result.stderr
    info = clean.inspect("fromspare")
    assert info["Id"] == spare_id
    assert info["State"]["Pid"] == spare_pid
    # The container's own limits, written into the spare's cgroup when the create took it.
    limit = Path("/sys/fs/cgroup/memory", clean.cgroup_parent, spare_id, "memory.limit_in_bytes")
    assert int(limit.read_text()) == 32 * 1024 * 1024
    assert process_comm(spare_pid) == "sleep"
    # Its own hostname, its loopback up ("unknown": lo has no carrier), and pid 1 of its namespace.
    out = clean.corral("exec", "fromspare", "sh", "-c", "hostname; cat /sys/class/net/lo/operstate /proc/1/comm")
    assert out.stdout.split() == [spare_id[:12], "unknown", "sleep"]
    next_id, next_pid = wait_for(lambda: _spare(clean))
    assert next_id != spare_id and _netns(next_pid) != _netns(spare_pid)
    assert clean.corral("rm", "-f", "fromspare").returncode == 0


def test_a_spare_that_died_falls_back_to_a_fresh_fork(clean: Daemon) -> None:
    spare_id, spare_pid = wait_for(lambda: _spare(clean))
    os.kill(spare_pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{spare_pid}"))
    result = clean.corral("run", "--name", "afresh", "busybox", "sh", "-c", "echo $$")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"
    assert clean.inspect("afresh")["Id"] == spare_id
    wait_for(lambda: _spare(clean))
    clean.corral("rm", "afresh")


def test_daemon_stop_and_kill_leave_no_spare(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    spare_id, spare_pid = wait_for(lambda: _spare(d))
    d.stop()
    assert not os.path.exists(f"/proc/{spare_pid}")
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{d.cgroup_parent}/{spare_id}"))

    d.start()
    spare_id, spare_pid = wait_for(lambda: _spare(d))
    d.kill9()
    # The launcher kills what the closed connection asked for; the next daemon sweeps the cgroup.
    wait_for(lambda: not os.path.exists(f"/proc/{spare_pid}"))
    d.start()
    wait_for(lambda: not list(Path("/sys/fs/cgroup").glob(f"*/{d.cgroup_parent}/{spare_id}")))
    assert d.cgroups_left() == []


def test_prepare_window_zero_keeps_no_spare(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    d.start("--prepare-window", "0")
    time.sleep(0.3)
    assert _spare(d) is None
    assert d.corral("run", "--rm", "busybox", "true").returncode == 0


@needs_docker
def test_rm_container_is_gone_at_once_and_its_files_soon_after(clean: Daemon) -> None:
    result = clean.docker("run", "--rm", "--name", "brief", "busybox", "sh", "-c", "echo bye")
    assert result.returncode == 0 and result.stdout == "bye\n"
    # Removed when `docker run --rm` returns: the name is free and nothing lists it.
    assert clean.docker("ps", "-aq").stdout == ""
    again = clean.docker("run", "--rm", "--name", "brief", "busybox", "true")
    assert again.returncode == 0, again.stderr
    wait_for(lambda: clean.container_dirs() == [], timeout=5)
    assert clean.cgroups_left() == []


def test_files_of_a_removal_a_crash_cut_short_are_deleted_at_start(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id = d.corral("create", "--name", "retiring", "busybox", "true").stdout.strip()
    d.stop()
    # What a daemon that died between a removal's answer and its file deletion leaves.
    containers = d.root / "containers"
    os.rename(containers / container_id, containers / f".removed-{container_id}")
    d.start()
    assert d.corral("ps", "-aq").stdout == ""
    assert d.corral("inspect", "retiring").returncode != 0
    wait_for(lambda: d.container_dirs() == [])
    # The name is free again.
    assert d.corral("create", "--name", "retiring", "busybox", "true").returncode == 0
    d.corral("rm", "retiring")


def test_the_init_layer_comes_made_ahead_for_the_last_image(clean: Daemon) -> None:
    assert clean.corral("run", "--rm", "busybox", "true").returncode == 0
    spare_id, _ = wait_for(lambda: _spare(clean))
    staging = clean.root / "containers" / f".spare-{spare_id}"
    wait_for(lambda: (staging / "init" / "etc" / "hostname").exists())
    container_id = clean.corral("create", "--name", "ahead", "busybox", "sh", "-c", "cat /etc/hostname").stdout.strip()
    assert container_id == spare_id
    assert (clean.root / "containers" / container_id / "init" / "etc" / "hostname").is_file()
    wait_for(lambda: not staging.exists())
    assert clean.corral("start", "ahead").returncode == 0
    assert clean.corral("wait", "ahead").stdout.strip() == "0"
    assert clean.corral("logs", "ahead").stdout == f"{container_id[:12]}\n"
    # Still the image's part, as an init layer made at start would be: nothing in the diff.
    assert clean.corral("diff", "ahead").stdout == ""
    clean.corral("rm", "ahead")

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


def _tree_ready(pid: int) -> bool:
    """Whether spare `pid` has pivoted into a tree built ahead: an overlay at its "/"."""
    try:
        mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == "/" and " - overlay " in line for line in mounts)


def _spare_with_tree(d: Daemon) -> tuple[str, int]:
    spare_id, spare_pid = wait_for(lambda: _spare(d))
    wait_for(lambda: _tree_ready(spare_pid))
    return spare_id, spare_pid


def test_the_spare_builds_the_last_images_tree_ahead(clean: Daemon) -> None:
    assert clean.corral("run", "--rm", "busybox", "true").returncode == 0
    spare_id, spare_pid = _spare_with_tree(clean)
    assert os.readlink(f"/proc/{spare_pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert clean.corral("run", "-d", "--name", "intree", "busybox", "sleep", "60").returncode == 0
    info = clean.inspect("intree")
    assert (info["Id"], info["State"]["Pid"]) == (spare_id, spare_pid)
    # A new file, and a copy-up (through the overlay's work dir, moved in with the rest).
    script = "echo made > /made; echo extra >> /etc/group; cat /etc/hostname; hostname; ls /"
    out = clean.corral("exec", "intree", "sh", "-c", script)
    lines = out.stdout.split()
    assert lines[:2] == [spare_id[:12], spare_id[:12]]
    assert {"bin", "etc", "proc", "made"} <= set(lines[2:])
    # Its overlay's upper dir is the container's own, moved in from the staging dir.
    upper = clean.root / "containers" / spare_id / "upper"
    assert (upper / "made").read_text() == "made\n"
    assert (upper / "etc" / "group").read_text().endswith("extra\n")
    # No host path in its mountinfo (the overlay's options name its dirs relative to the state root,
    # and as they were when mounted: `containers/.spare-<id>/upper`).
    mounts = clean.corral("exec", "intree", "cat", "/proc/self/mountinfo").stdout
    assert " / / " in mounts and str(clean.root) not in mounts
    assert clean.corral("rm", "-f", "intree").returncode == 0


def test_a_tree_built_ahead_serves_only_a_container_of_that_tree(clean: Daemon) -> None:
    made = clean.corral("run", "--name", "marker", "busybox", "sh", "-c", "echo one > /marker")
    assert made.returncode == 0, made.stderr
    assert clean.corral("commit", "marker", "marked:1").returncode == 0
    clean.corral("rm", "marker")
    clean.corral("run", "--rm", "marked:1", "true")

    # Another hostname: the same tree, its generated files rewritten.
    spare_id, spare_pid = _spare_with_tree(clean)
    named = clean.corral("run", "-d", "--name", "named", "--hostname", "other", "marked:1", "sleep", "60")
    assert named.returncode == 0, named.stderr
    assert clean.inspect("named")["State"]["Pid"] == spare_pid
    out = clean.corral("exec", "named", "sh", "-c", "cat /marker /etc/hostname; hostname; grep -c other /etc/hosts")
    assert out.stdout.split() == ["one", "other", "other", "1"]

    # Another image: the same spare, back out of its tree, on the right one.
    spare_id, spare_pid = _spare_with_tree(clean)
    plain = clean.corral("run", "-d", "--name", "plain", "busybox", "sleep", "60")
    assert plain.returncode == 0, plain.stderr
    info = clean.inspect("plain")
    assert (info["Id"], info["State"]["Pid"]) == (spare_id, spare_pid)
    assert clean.corral("exec", "plain", "ls", "/marker").returncode != 0
    assert clean.corral("exec", "plain", "ls", "/bin/sh").returncode == 0

    # A volume, a tty: trees the spare cannot build ahead; it builds them once handed over.
    clean.corral("run", "--rm", "marked:1", "true")
    for name, options in (("withvolume", ["-v", "/data"]), ("withtty", ["-t"])):
        spare_id, spare_pid = _spare_with_tree(clean)
        result = clean.corral("run", "-d", "--name", name, *options, "marked:1", "sleep", "60")
        assert result.returncode == 0, result.stderr
        info = clean.inspect(name)
        assert (info["Id"], info["State"]["Pid"]) == (spare_id, spare_pid)
        assert clean.corral("exec", name, "cat", "/marker").stdout == "one\n"
        clean.corral("run", "--rm", "marked:1", "true")
    for name, target in (("withvolume", "/data"), ("withtty", "/dev/console")):
        mounted = clean.corral("exec", name, "grep", "-c", f" {target} ", "/proc/self/mountinfo")
        assert mounted.stdout == "1\n", (name, mounted)
    clean.remove_all()
    assert clean.corral("rmi", "marked:1").returncode == 0


@needs_docker
def test_a_tree_over_a_layer_unpacked_again_is_not_used(clean: Daemon, tmp_path: Path) -> None:
    made = clean.docker("run", "--name", "marker", "busybox", "sh", "-c", "echo two > /marker")
    assert made.returncode == 0, made.stderr
    assert clean.docker("commit", "marker", "again:1").returncode == 0
    clean.docker("rm", "marker")
    assert clean.docker("run", "--rm", "again:1", "true").returncode == 0
    _, spare_pid = _spare_with_tree(clean)
    # The same layer at the same path, but not the directory the spare's overlay holds.
    archive = str(tmp_path / "again.tar")
    assert clean.docker("save", "-o", archive, "again:1").returncode == 0
    assert clean.docker("rmi", "again:1").returncode == 0
    assert clean.docker("load", "-i", archive).returncode == 0
    result = clean.docker("run", "-d", "--name", "again", "again:1", "sh", "-c", "cat /marker; exec sleep 60")
    assert result.returncode == 0, result.stderr
    # The spare, handed over without its tree, built the container's own: the layer as it is now.
    assert clean.inspect("again")["State"]["Pid"] == spare_pid
    assert wait_for(lambda: clean.docker("logs", "again").stdout) == "two\n"
    clean.docker("rm", "-f", "again")
    assert clean.docker("rmi", "again:1").returncode == 0


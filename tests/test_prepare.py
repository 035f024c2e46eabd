"""A created container's process is forked and set up at create time, parked before its exec, and
started with one byte (reactor/prepare.py, launcher/containers.py); every way it can go unused
leaves nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from harness import DOCKER, Daemon, wait_for

needs_docker = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


def _parked(d: Daemon, container_id: str) -> list[int]:
    """The launcher's children that live in `container_id`'s cgroup (before a start: its parked process)."""
    launcher = d.launcher_pid()
    if launcher is None:
        return []
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for pid in map(int, children):
        try:
            if container_id in Path(f"/proc/{pid}/cgroup").read_text():
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _cgroup_dirs(d: Daemon, container_id: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{d.cgroup_parent}/{container_id}") if p.is_dir()]


def _start_and_wait(d: Daemon, ref: str) -> str:
    """Its output once it has run to the end."""
    started = d.corral("start", ref)
    assert started.returncode == 0, started.stderr
    assert d.corral("wait", ref).stdout.strip() == "0"
    return d.corral("logs", ref).stdout


def _create(d: Daemon, *args: str) -> str:
    result = d.corral("create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_start_takes_the_process_prepared_at_create(clean: Daemon) -> None:
    container_id = _create(clean, "--name", "early", "busybox", "sh", "-c", "echo $$; hostname; exec sleep 60")
    (parked,) = wait_for(lambda: _parked(clean, container_id))
    assert _cgroup_dirs(clean, container_id)
    assert clean.inspect("early")["State"]["Status"] == "created"

    assert clean.corral("start", "early").returncode == 0
    # The very process prepared at create: pid 1 of its namespace all along.
    assert clean.inspect("early")["State"]["Pid"] == parked
    wait_for(lambda: len(clean.corral("logs", "early").stdout.splitlines()) == 2)
    assert clean.corral("logs", "early").stdout.splitlines() == ["1", container_id[:12]]
    assert "container.started_prepared" in clean.log_tail(200)
    assert clean.corral("rm", "-f", "early").returncode == 0


def test_rm_of_a_never_started_container_kills_its_prepared_process(clean: Daemon) -> None:
    container_id = _create(clean, "busybox", "true")
    (parked,) = wait_for(lambda: _parked(clean, container_id))
    assert clean.corral("rm", container_id).returncode == 0
    wait_for(lambda: not os.path.exists(f"/proc/{parked}"))
    assert _cgroup_dirs(clean, container_id) == []


def test_a_write_into_the_created_container_is_seen_by_its_start(clean: Daemon, tmp_path: Path) -> None:
    container_id = _create(clean, "--name", "written", "busybox", "cat", "/note")
    (parked,) = wait_for(lambda: _parked(clean, container_id))
    note = tmp_path / "note"
    note.write_text("copied in after create\n")
    assert clean.corral("cp", str(note), "written:/note").returncode == 0
    # Its parked process had the old tree mounted: discarded, and the start makes a new one.
    wait_for(lambda: not os.path.exists(f"/proc/{parked}"))
    assert _start_and_wait(clean, "written") == "copied in after create\n"
    assert clean.inspect("written")["State"]["ExitCode"] == 0


def test_unclaimed_prepared_process_expires(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    d.start("--prepare-window", "0.3")
    container_id = _create(d, "--name", "late", "busybox", "sh", "-c", "echo $$")
    (parked,) = wait_for(lambda: _parked(d, container_id))
    wait_for(lambda: not os.path.exists(f"/proc/{parked}"))
    wait_for(lambda: _cgroup_dirs(d, container_id) == [])
    # Started the ordinary way: fork at start.
    assert _start_and_wait(d, "late") == "1\n"
    d.corral("rm", "late")


def test_prepare_window_zero_prepares_nothing(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.stop()
    d.start("--prepare-window", "0")
    container_id = _create(d, "busybox", "true")
    time.sleep(0.3)
    assert _parked(d, container_id) == []
    assert _cgroup_dirs(d, container_id) == []
    assert _start_and_wait(d, container_id) == ""
    d.corral("rm", container_id)


def test_daemon_killed_with_a_prepared_container(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id = _create(d, "--name", "orphaned", "busybox", "sh", "-c", "echo started")
    (parked,) = wait_for(lambda: _parked(d, container_id))
    d.kill9()
    # The launcher kills what the closed connection prepared; the next daemon sweeps its cgroup.
    wait_for(lambda: not os.path.exists(f"/proc/{parked}"))
    d.start()
    wait_for(lambda: _cgroup_dirs(d, container_id) == [])
    assert d.inspect("orphaned")["State"]["Status"] == "created"
    assert _start_and_wait(d, "orphaned") == "started\n"
    d.corral("rm", "orphaned")


def test_daemon_stop_discards_prepared_processes(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    container_id = _create(d, "busybox", "true")
    (parked,) = wait_for(lambda: _parked(d, container_id))
    d.stop()
    assert not os.path.exists(f"/proc/{parked}")
    assert _cgroup_dirs(d, container_id) == []
    d.start()
    d.corral("rm", container_id)


@needs_docker
def test_a_parked_process_holds_no_other_containers_stdin(clean: Daemon) -> None:
    reader = _create(clean, "-i", "--name", "reader", "busybox", "cat")
    wait_for(lambda: _parked(clean, reader))
    # Forked while the launcher held reader's stdin pipe: it must not keep a copy of it.
    bystander = _create(clean, "--name", "bystander", "busybox", "true")
    wait_for(lambda: _parked(clean, bystander))
    started = time.monotonic()
    result = clean.docker("start", "-ai", "reader", input="through stdin\n", timeout=20)
    assert result.stdout == "through stdin\n", result.stderr
    # cat saw EOF when the client closed its stdin, not when the bystander's window ran out.
    assert time.monotonic() - started < 5


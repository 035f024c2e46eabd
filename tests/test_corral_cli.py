"""The corral CLI's own commands behave as their docker counterparts do."""

from __future__ import annotations

import json

from harness import Daemon, wait_for


def test_stdin_is_relayed_and_closed(clean: Daemon) -> None:
    result = clean.corral("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"one\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\nend\n"


def test_create_start_wait_and_logs(clean: Daemon) -> None:
    created = clean.corral("create", "--name", "later", "busybox", "sh", "-c", "echo a; echo b >&2; echo c; exit 9")
    assert created.returncode == 0 and len(created.stdout.strip()) == 64
    assert clean.inspect("later")["State"]["Status"] == "created"
    assert clean.corral("start", "later").stdout.strip() == "later"
    assert clean.corral("wait", "later").stdout.strip() == "9"
    logs = clean.corral("logs", "later")
    assert logs.stdout == "a\nc\n" and logs.stderr == "b\n"
    # stdout and stderr are separate pipes, so which of b and c is last is up to the scheduler.
    tail = clean.corral("logs", "--tail", "1", "later")
    assert tail.stdout + tail.stderr in ("c\n", "b\n")
    stamped = clean.corral("logs", "-t", "later").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["a", "c"]
    # A second run appends to the same log, as Docker's json-file does.
    clean.corral("start", "later")
    clean.corral("wait", "later")
    assert clean.corral("logs", "later").stdout == "a\nc\na\nc\n"


def test_ps_columns_and_filters(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "up1", "-l", "tier=web", "busybox", "sleep", "30")
    clean.corral("run", "--name", "done1", "busybox", "true")
    running = clean.corral("ps").stdout.splitlines()
    assert running[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(running) == 2 and running[1].endswith("up1") and '"sleep 30"' in running[1]
    everything = clean.corral("ps", "-a", "-q").stdout.split()
    assert len(everything) == 2 and all(len(i) == 12 for i in everything)
    exited = clean.corral("ps", "-a", "--filter", "status=exited").stdout
    assert "done1" in exited and "Exited (0)" in exited and "up1" not in exited
    labelled = clean.corral("ps", "-q", "--filter", "label=tier=web").stdout.split()
    assert labelled == [clean.inspect("up1")["Id"][:12]]


def test_kill_stop_rm_report_each_container(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "k1", "busybox", "sleep", "30")
    killed = clean.corral("kill", "k1", "nosuch")
    assert killed.returncode == 1
    assert killed.stdout.strip() == "k1" and "No such container: nosuch" in killed.stderr
    wait_for(lambda: clean.inspect("k1")["State"]["Status"] == "exited")
    assert clean.inspect("k1")["State"]["ExitCode"] == 137
    not_running = clean.corral("kill", "k1")
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    assert clean.corral("stop", "k1").returncode == 0  # already stopped: Docker's 304 is fine
    assert clean.corral("rm", "k1").stdout.strip() == "k1"


def test_inspect_and_images(clean: Daemon) -> None:
    clean.corral("create", "--name", "ins", "-e", "X=1", "-w", "/srv", "busybox", "sleep", "1")
    info = json.loads(clean.corral("inspect", "ins").stdout)[0]
    assert info["Name"] == "/ins" and info["Path"] == "sleep" and info["Args"] == ["1"]
    assert "X=1" in info["Config"]["Env"] and info["Config"]["WorkingDir"] == "/srv"
    assert info["Image"].startswith("sha256:")
    missing = clean.corral("inspect", "ins", "nosuch")
    assert missing.returncode == 1 and len(json.loads(missing.stdout)) == 1
    images = clean.corral("images").stdout.splitlines()
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert images[1].split()[:3] == ["busybox", "latest", info["Image"].removeprefix("sha256:")[:12]]


def test_unreachable_daemon(tmp_path: object) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "supervisor.cli.main", "-H", "unix:///nonexistent/corral.sock", "ps"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "cannot connect to the corral daemon at unix:///nonexistent/corral.sock" in result.stderr

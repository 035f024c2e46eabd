"""Done-when 4 and 5: memory, pids and CPU limits bite; stop escalates and the cgroup goes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import Daemon


def _cgroup_dir(daemon: Daemon, controller: str, container_id: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / daemon.cgroup_parent / container_id


def test_memory_limit_oom_kill(clean: Daemon) -> None:
    result = clean.corral(
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=200M count=1; status=$?; echo survived; exit $status",
    )
    # The shell lives on (only dd was killed) and passes on dd's fate.
    assert result.stdout == "survived\n"
    assert result.returncode == 137, (result.returncode, result.stderr)
    state = clean.inspect("hog")["State"]
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137
    assert clean.inspect("hog")["HostConfig"]["Memory"] == 32 * 1024 * 1024


def test_oom_of_pid_one_itself(clean: Daemon) -> None:
    # The allocating process is pid 1: the exit status itself comes from the OOM kill.
    result = clean.corral(
        "run", "--name", "hog1", "-m", "16m", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"
    )
    assert result.returncode == 137
    assert clean.inspect("hog1")["State"]["OOMKilled"] is True


def test_pids_limit_stops_a_fork_loop(clean: Daemon) -> None:
    loop = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo all forked"
    begin = time.monotonic()
    result = clean.corral("run", "--name", "forker", "--pids-limit", "20", "busybox", "sh", "-c", loop)
    assert time.monotonic() - begin < 20
    assert "can't fork" in result.stderr
    assert "all forked" not in result.stdout
    assert result.returncode != 0
    assert clean.inspect("forker")["HostConfig"]["PidsLimit"] == 20


def test_pids_limit_is_applied(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "few", "--pids-limit", "20", "busybox", "sleep", "30")
    pids = _cgroup_dir(clean, "pids", clean.inspect("few")["Id"])
    assert (pids / "pids.max").read_text().strip() == "20"
    assert int((pids / "pids.current").read_text()) == 1
    clean.corral("rm", "-f", "few")


def test_cpus_throttle_a_busy_loop(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "spin", "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
    container_id = clean.inspect("spin")["Id"]
    cpu = _cgroup_dir(clean, "cpu", container_id)
    cpuacct = _cgroup_dir(clean, "cpuacct", container_id)
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    usage_before = int((cpuacct / "cpuacct.usage").read_text())
    throttled_before = int(dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())["nr_throttled"])
    time.sleep(1.0)
    usage = (int((cpuacct / "cpuacct.usage").read_text()) - usage_before) / 1e9
    stats = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    clean.corral("rm", "-f", "spin")
    assert int(stats["nr_throttled"]) > throttled_before
    # Half a CPU over one second of wall time, with slack for period edges.
    assert 0.3 < usage < 0.7, usage


def test_stop_kills_after_timeout_and_cgroup_is_gone(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; sleep 1000 & wait")
    container_id = clean.inspect("stubborn")["Id"]
    assert _cgroup_dir(clean, "memory", container_id).exists()
    begin = time.monotonic()
    stopped = clean.corral("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - begin
    assert stopped.returncode == 0, stopped.stderr
    assert 1.0 <= elapsed < 5.0, elapsed
    state = clean.inspect("stubborn")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        assert not (hierarchy / clean.cgroup_parent / container_id).exists(), hierarchy


def test_stop_of_a_cooperative_process_is_quick(clean: Daemon) -> None:
    clean.corral(
        "run", "-d", "--name", "polite", "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"
    )
    begin = time.monotonic()
    assert clean.corral("stop", "polite").returncode == 0
    assert time.monotonic() - begin < 3
    assert clean.inspect("polite")["State"]["ExitCode"] == 0


def test_limits_are_written(clean: Daemon) -> None:
    clean.corral(
        "run",
        "-d",
        "--name",
        "limited",
        "-m",
        "32m",
        "--memory-swap",
        "64m",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "30",
    )
    container_id = clean.inspect("limited")["Id"]
    memory = _cgroup_dir(clean, "memory", container_id)
    assert int((memory / "memory.limit_in_bytes").read_text()) == 32 << 20
    if (memory / "memory.memsw.limit_in_bytes").exists():
        assert int((memory / "memory.memsw.limit_in_bytes").read_text()) == 64 << 20
    assert (_cgroup_dir(clean, "cpu", container_id) / "cpu.shares").read_text().strip() == "512"
    assert (_cgroup_dir(clean, "cpuset", container_id) / "cpuset.cpus").read_text().strip() == "0"
    status = clean.corral(
        "run", "--rm", "--cpuset-cpus", "0", "busybox", "grep", "Cpus_allowed_list", "/proc/self/status"
    )
    assert status.stdout.split()[1] == "0"
    clean.corral("rm", "-f", "limited")


def test_container_is_in_its_cgroup_everywhere(clean: Daemon) -> None:
    clean.corral("run", "-d", "--name", "member", "busybox", "sleep", "30")
    info = clean.inspect("member")
    host_view = Path(f"/proc/{info['State']['Pid']}/cgroup").read_text().splitlines()
    expected = f"/{clean.cgroup_parent}/{info['Id']}"
    # Every hierarchy, the v2 one (`0::`, joined at clone time) included.
    assert host_view and all(line.split(":", 2)[2] == expected for line in host_view), host_view
    # Its own cgroup namespace: a container sees itself at the root.
    inside = clean.corral("run", "--rm", "busybox", "cat", "/proc/self/cgroup").stdout.splitlines()
    assert inside and all(line.split(":", 2)[2] == "/" for line in inside), inside
    clean.corral("rm", "-f", "member")


def test_oom_is_reported_even_when_the_exit_code_hides_it(clean: Daemon) -> None:
    # The OOM-killed process is a child; pid 1 shrugs and exits 0. OOMKilled comes from the cgroup.
    result = clean.corral(
        "run",
        "--name",
        "shrug",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 0",
    )
    assert result.returncode == 0
    state = clean.inspect("shrug")["State"]
    assert state["ExitCode"] == 0 and state["OOMKilled"] is True


def test_oom_event_is_published_when_it_happens(clean: Daemon) -> None:
    since = time.time()
    clean.corral(
        "run",
        "--name",
        "oomev",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 0",
    )
    events = (
        clean.api(
            "GET",
            "/events",
            query={"since": f"{since:.6f}", "until": f"{time.time():.6f}", "filters": '{"container": ["oomev"]}'},
        )
        .body.decode()
        .splitlines()
    )
    actions = [json.loads(line)["Action"] for line in events if line.strip()]
    # The OOM comes from the cgroup while the container runs, before it dies (and exits 0).
    assert "oom" in actions and actions.index("oom") < actions.index("die"), actions

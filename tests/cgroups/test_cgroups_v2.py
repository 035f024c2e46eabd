"""The v2 driver where this host allows: its file plumbing on plain files, and
create/join/events/kill/remove on the controller-less unified hierarchy of a
hybrid host. v2 limits on a real kernel need a pure v2 host."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cgroup_sandbox import Sandbox, wait_for
from structlog.testing import capture_logs

from supervisor.isolation.cgroups import Resources
from supervisor.isolation.cgroups.fs import read_text
from supervisor.isolation.cgroups.v2 import core
from supervisor.isolation.cgroups.v2.cgroup import V2Cgroup

MiB = 1024 * 1024


def fake_cgroup(tmp_path: Path, files: dict[str, str]) -> V2Cgroup:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return V2Cgroup(("corral", "x"), str(tmp_path))


def test_update_writes_each_file(tmp_path: Path) -> None:
    names = ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max", "cpuset.cpus"]
    cgroup = fake_cgroup(tmp_path, {name: "" for name in names})
    cgroup.update(
        Resources(memory=32 * MiB, memory_swap=-1, nano_cpus=1_500_000_000, cpu_shares=2, pids_limit=7, cpuset_cpus="0")
    )
    assert {name: (tmp_path / name).read_text() for name in names} == {
        "memory.max": str(32 * MiB),
        "memory.swap.max": "max",
        "cpu.max": "150000 100000",
        "cpu.weight": "1",
        "pids.max": "7",
        "cpuset.cpus": "0",
    }


def test_missing_controller_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    cgroup = fake_cgroup(tmp_path, {"memory.max": ""})  # no swap accounting, no pids controller
    with capture_logs() as logs:
        cgroup.update(Resources(memory=32 * MiB, pids_limit=5))
    assert (tmp_path / "memory.max").read_text() == str(32 * MiB)
    skipped = {entry["file"] for entry in logs if entry["event"] == "cgroup.limit_unsupported"}
    assert skipped == {"memory.swap.max", "pids.max"}


def test_stats_from_files(tmp_path: Path) -> None:
    cgroup = fake_cgroup(
        tmp_path,
        {
            "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
            "memory.current": "1048576\n",
            "pids.current": "3\n",
            "cpu.stat": "usage_usec 500\nuser_usec 400\nsystem_usec 100\n"
            "nr_periods 9\nnr_throttled 2\nthrottled_usec 40\n",
            "cgroup.events": "populated 1\nfrozen 0\n",
            "cgroup.procs": "12\n10\n",
        },
    )
    assert cgroup.oom_kill_count() == 1
    assert cgroup.memory_usage() == MiB
    assert cgroup.pids_current() == 3
    assert cgroup.cpu_stats().nr_throttled == 2 and cgroup.cpu_stats().usage_usec == 500
    assert cgroup.is_populated() and cgroup.pids() == [10, 12]
    assert cgroup.procs_files() == [str(tmp_path / "cgroup.procs")]
    assert cgroup.events_file() == str(tmp_path / "cgroup.events")


def test_usage_from_files(tmp_path: Path) -> None:
    cgroup = fake_cgroup(
        tmp_path,
        {
            "memory.current": "2097152\n",
            "memory.max": "max\n",
            "memory.stat": "anon 100\ninactive_file 4096\n",
            "pids.current": "2\n",
            "pids.max": "40\n",
            "cpu.stat": "usage_usec 500\nuser_usec 400\nsystem_usec 100\nnr_periods 9\nnr_throttled 2\nthrottled_usec 40\n",
            "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        },
    )
    usage = cgroup.usage()
    assert (usage.cpu.usage_usec, usage.user_usec, usage.system_usec) == (500, 400, 100)
    assert (usage.memory, usage.memory_limit, usage.memory_max, usage.memory_failcnt) == (2 * MiB, None, None, None)
    assert usage.memory_stat == {"anon": 100, "inactive_file": 4096}
    assert (usage.pids, usage.pids_limit) == (2, 40)
    assert [(io.op, io.value) for io in usage.io] == [("read", 4096), ("write", 8192)]
    # A controller the cgroup does not have (no io, no memory files) reads as nothing used.
    (tmp_path / "bare").mkdir()
    bare = V2Cgroup(("corral", "y"), str(tmp_path / "bare")).usage()
    assert (bare.memory, bare.memory_limit, bare.pids, bare.io) == (0, None, 0, ())


def test_v2_driver_lifecycle_on_unified(unified_sandbox: Sandbox) -> None:
    box = unified_sandbox
    assert box.driver.version == "2"
    with capture_logs() as logs:
        cgroup = box.create(Resources(memory=32 * MiB))  # no memory controller on unified: skipped
    assert any(entry["event"] == "cgroup.limit_unsupported" for entry in logs)
    assert list(cgroup.paths) == ["unified"] and len(cgroup.procs_files()) == 1
    events = cgroup.events_file()
    assert events is not None and not cgroup.is_populated()

    proc = box.busybox(cgroup, "sh", "-c", "busybox sleep 30 & exec busybox sleep 30")
    assert wait_for(lambda: len(cgroup.pids()) == 2)
    assert "populated 1" in read_text(events)
    assert box.driver.open(box.parent, "c").pids() == cgroup.pids()
    assert cgroup.cpu_stats().usage_usec >= 0  # core cpu.stat exists without the controller

    cgroup.kill()  # cgroup.kill
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert wait_for(lambda: not cgroup.is_populated())
    assert cgroup.remove() and not os.path.exists(cgroup.paths["unified"])
    assert box.driver.remove_parent(box.parent)


def test_v2_freeze_kill_on_unified(unified_sandbox: Sandbox) -> None:
    cgroup = unified_sandbox.create()
    unified_sandbox.busybox(cgroup, "sh", "-c", "busybox sleep 30 & busybox sleep 30 & wait")
    assert wait_for(lambda: len(cgroup.pids()) == 3)
    core.kill_frozen(cgroup.paths["unified"])
    assert wait_for(lambda: not cgroup.is_populated())

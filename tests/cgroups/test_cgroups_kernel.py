"""The cgroup driver on the real kernel (as root): limits, OOM, pids, CPU
throttling, kill, remove. On a pure v2 host this exercises V2Driver; on a
hybrid host V1Driver with the unified hierarchy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest
from cgroup_sandbox import Sandbox, hierarchy_roots, wait_for

from supervisor.isolation.cgroups import HostCpus, LimitRejected, Resources, read_mounts
from supervisor.isolation.cgroups.fs import read_text
from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.cgroups.limits import controller_of
from supervisor.isolation.cgroups.v1 import mapping as v1_mapping
from supervisor.isolation.cgroups.v1.cgroup import V1Cgroup
from supervisor.isolation.cgroups.v2 import core
from supervisor.isolation.cgroups.v2 import mapping as v2_mapping

MiB = 1024 * 1024


def limit_file(cgroup: Cgroup, filename: str) -> str:
    if isinstance(cgroup, V1Cgroup):
        directory = cgroup.controller_dir(controller_of(filename))
        assert directory is not None
        return os.path.join(directory, filename)
    return os.path.join(cgroup.paths["unified"], filename)


def assert_limits(sandbox: Sandbox, cgroup: Cgroup, resources: Resources) -> None:
    mapping = v1_mapping if sandbox.driver.version == "1" else v2_mapping
    for filename, value in mapping.files(resources).items():
        path = limit_file(cgroup, filename)
        if not os.path.exists(path):  # memory.memsw.* / memory.swap.max without swap accounting
            continue
        actual = read_text(path).strip()
        if value in ("-1", "max"):
            assert actual == "max" or int(actual) >= 2**62, (filename, actual)
        else:
            assert actual == value, (filename, actual, value)


def test_limits_written_and_process_joins_everywhere(sandbox: Sandbox) -> None:
    resources = Resources(memory=32 * MiB, pids_limit=20, nano_cpus=500_000_000, cpu_shares=512)
    cgroup = sandbox.create(resources)
    assert_limits(sandbox, cgroup, resources)
    assert {os.path.dirname(os.path.dirname(f)) for f in cgroup.procs_files()} >= {
        os.path.dirname(d) for d in cgroup.paths.values()
    }
    assert len(cgroup.procs_files()) == len(hierarchy_roots())  # every hierarchy, name=systemd included
    assert cgroup.path == f"/{sandbox.parent}/c"
    assert not cgroup.is_populated()

    proc = sandbox.busybox(cgroup, "sleep", "30")
    assert wait_for(cgroup.is_populated)
    with open(f"/proc/{proc.pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert lines and all(line.endswith(":" + cgroup.path) for line in lines), lines
    assert cgroup.pids() == [proc.pid]
    assert cgroup.pids_current() == 1
    assert cgroup.memory_usage() > 0


def test_update_raises_and_lowers_memory(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(Resources(memory=32 * MiB))
    for resources in (
        Resources(memory=64 * MiB, memory_swap=256 * MiB),  # raising: memsw must go first on v1
        Resources(memory=16 * MiB, memory_swap=16 * MiB),  # lowering: limit must go first on v1
        Resources(memory=24 * MiB, memory_swap=-1),
        Resources(memory=8 * MiB),
        Resources(memory=48 * MiB, memory_swap=96 * MiB),  # raising above the old memsw: memsw first
        Resources(pids_limit=0, cpuset_cpus=str(min(HostCpus.probe().online))),
    ):
        cgroup.update(resources)
        assert_limits(sandbox, cgroup, resources)


def test_oom_kill(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(Resources(memory=32 * MiB))
    proc = sandbox.busybox(
        cgroup, "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1", stderr=subprocess.DEVNULL
    )
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert cgroup.oom_kill_count() >= 1


def test_pids_limit_stops_fork_loop(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(Resources(pids_limit=20))
    with tempfile.TemporaryFile() as err:
        script = "i=0; while [ $i -lt 40 ]; do busybox sleep 30 & i=$((i+1)); done; wait"
        shell = sandbox.busybox(cgroup, "sh", "-c", script, stderr=err)
        assert shell.wait(timeout=10) != 0
        err.seek(0)
        assert b"can't fork" in err.read()
    assert cgroup.pids_current() <= 20
    assert 10 < len(cgroup.pids()) < 20


def test_cpu_quota_throttles(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(Resources(nano_cpus=500_000_000))
    sandbox.busybox(cgroup, "sh", "-c", "while :; do :; done")
    wait_for(lambda: False, timeout=1.0)
    stats = cgroup.cpu_stats()
    cgroup.kill()
    assert stats.nr_throttled > 0 and stats.throttled_usec > 0
    assert stats.nr_periods >= 5
    assert 100_000 < stats.usage_usec < 750_000, stats


def test_cpuset_pins_the_process(sandbox: Sandbox) -> None:
    cpu = min(HostCpus.probe().online)
    cgroup = sandbox.create(Resources(cpuset_cpus=str(cpu)))
    proc = sandbox.busybox(cgroup, "grep", "Cpus_allowed_list", "/proc/self/status", stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=5)
    assert out.split() == [b"Cpus_allowed_list:", str(cpu).encode()]


def start_tree(sandbox: Sandbox, cgroup: Cgroup) -> None:
    script = (
        "busybox sleep 30 & busybox sleep 30 & "
        "(busybox sh -c 'busybox sleep 30 & busybox sleep 30 & wait' &) ; exec busybox sleep 30"
    )
    sandbox.busybox(cgroup, "sh", "-c", script)
    assert wait_for(lambda: len(cgroup.pids()) >= 6), cgroup.pids()


def test_kill_kills_the_whole_tree(sandbox: Sandbox) -> None:
    cgroup = sandbox.create()
    start_tree(sandbox, cgroup)
    cgroup.kill()
    assert sandbox.procs[0].wait(timeout=5) == -signal.SIGKILL
    assert wait_for(lambda: not cgroup.is_populated())
    assert cgroup.pids() == []


def test_kill_with_v1_freezer(sandbox: Sandbox) -> None:
    cgroup = sandbox.create()
    if not isinstance(cgroup, V1Cgroup) or cgroup.controller_dir("freezer") is None:
        pytest.skip("no v1 freezer")
    start_tree(sandbox, cgroup)
    assert cgroup._kill_with_freezer()
    assert wait_for(lambda: not cgroup.pids())
    assert read_text(os.path.join(cgroup.controller_dir("freezer") or "", "freezer.state")).strip() == "THAWED"


def test_kill_with_v2_freeze(sandbox: Sandbox) -> None:
    cgroup = sandbox.create()
    unified = cgroup.paths.get("unified")
    if unified is None:
        pytest.skip("no cgroup v2 hierarchy")
    start_tree(sandbox, cgroup)
    core.kill_frozen(unified)
    assert wait_for(lambda: not cgroup.pids())
    assert read_text(os.path.join(unified, "cgroup.freeze")).strip() == "0"


def test_events_file_reports_populated(sandbox: Sandbox) -> None:
    cgroup = sandbox.create()
    events = cgroup.events_file()
    if read_mounts().unified is None:
        assert events is None
        return
    assert events is not None and "populated 0" in read_text(events)
    sandbox.busybox(cgroup, "sleep", "30")
    assert wait_for(lambda: "populated 1" in read_text(events))
    cgroup.kill()
    assert wait_for(lambda: "populated 0" in read_text(events))


def test_remove_leaves_nothing_and_is_idempotent(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(Resources(memory=32 * MiB, cpuset_cpus="0"))
    proc = sandbox.busybox(cgroup, "sleep", "30")
    cgroup.kill()
    proc.wait(timeout=5)
    assert cgroup.remove()
    assert not any(os.path.exists(d) for d in cgroup.paths.values())
    assert cgroup.remove()
    assert sandbox.driver.remove_parent(sandbox.parent)
    assert not any(os.path.exists(os.path.join(root, sandbox.parent)) for root in hierarchy_roots())


def test_remove_parent_keeps_a_parent_in_use(sandbox: Sandbox) -> None:
    sandbox.create()
    assert not sandbox.driver.remove_parent(sandbox.parent)
    assert all(os.path.isdir(os.path.join(root, sandbox.parent)) for root in hierarchy_roots())


def test_open_existing_and_missing(sandbox: Sandbox) -> None:
    created = sandbox.create(Resources(pids_limit=5))
    opened = sandbox.driver.open(sandbox.parent, "c")
    assert opened.paths == created.paths and opened.procs_files() == created.procs_files()
    with pytest.raises(FileNotFoundError):
        sandbox.driver.open(sandbox.parent, "missing")


def test_failed_create_leaves_nothing(sandbox: Sandbox) -> None:
    # validation would refuse CPU 4095; the kernel does too, after the dirs exist
    with pytest.raises(LimitRejected, match="cpuset.cpus"):
        sandbox.driver.create(sandbox.parent, "bad", Resources(cpuset_cpus="4095"))
    assert not any(os.path.exists(os.path.join(root, sandbox.parent)) for root in hierarchy_roots())


def test_lowering_memory_below_usage_is_refused_on_v1(sandbox: Sandbox) -> None:
    if sandbox.driver.version != "1":
        pytest.skip("v2 answers memory.max below usage with the OOM killer")
    cgroup = sandbox.create(Resources(memory=64 * MiB))
    code = "import time; b = bytearray(24 << 20); time.sleep(30)"
    sandbox.spawn(cgroup, sys.executable, "-S", "-c", code)
    assert wait_for(lambda: cgroup.memory_usage() > 24 * MiB)
    with pytest.raises(LimitRejected, match="memory.limit_in_bytes"):
        cgroup.update(Resources(memory=8 * MiB, memory_swap=8 * MiB))

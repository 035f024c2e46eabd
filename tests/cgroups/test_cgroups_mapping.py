"""Resources -> {file: value} for v1 and v2, and the v1 memory write order (pure)."""

from __future__ import annotations

from supervisor.isolation.cgroups import Resources
from supervisor.isolation.cgroups.limits import controller_of
from supervisor.isolation.cgroups.v1 import cpu as v1_cpu
from supervisor.isolation.cgroups.v1 import mapping as v1
from supervisor.isolation.cgroups.v1 import memory as v1_memory
from supervisor.isolation.cgroups.v2 import cpu as v2_cpu
from supervisor.isolation.cgroups.v2 import mapping as v2
from supervisor.isolation.cgroups.v2 import memory as v2_memory

MiB = 1024 * 1024
LIMIT, MEMSW = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"


def test_empty_resources_write_nothing() -> None:
    assert v1.files(Resources()) == {}
    assert v2.files(Resources()) == {}


def test_v1_everything() -> None:
    resources = Resources(memory=32 * MiB, pids_limit=20, nano_cpus=500_000_000, cpu_shares=512, cpuset_cpus="0-1")
    assert v1.files(resources) == {
        "cpuset.cpus": "0-1",
        LIMIT: str(32 * MiB),
        MEMSW: str(64 * MiB),
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "50000",
        "cpu.shares": "512",
        "pids.max": "20",
    }
    assert list(v1.files(resources))[0] == "cpuset.cpus"


def test_v1_memory_swap() -> None:
    assert v1.files(Resources(memory=32 * MiB, memory_swap=-1)) == {LIMIT: str(32 * MiB), MEMSW: "-1"}
    assert v1.files(Resources(memory=32 * MiB, memory_swap=32 * MiB)) == {LIMIT: str(32 * MiB), MEMSW: str(32 * MiB)}
    assert v1.files(Resources(memory_swap=-1)) == {MEMSW: "-1"}


def test_v1_pids_unlimited() -> None:
    assert v1.files(Resources(pids_limit=0)) == {"pids.max": "max"}
    assert v1.files(Resources(pids_limit=-1)) == {"pids.max": "max"}


def test_v1_shares_clamped() -> None:
    assert v1.files(Resources(cpu_shares=1)) == {"cpu.shares": "2"}


def test_v1_memory_order_raising_writes_memsw_first() -> None:
    files = {LIMIT: str(64 * MiB), MEMSW: str(128 * MiB)}
    assert v1_memory.write_order(files, current_limit=32 * MiB) == [(MEMSW, str(128 * MiB)), (LIMIT, str(64 * MiB))]


def test_v1_memory_order_lowering_writes_limit_first() -> None:
    files = {LIMIT: str(16 * MiB), MEMSW: str(16 * MiB)}
    assert v1_memory.write_order(files, current_limit=32 * MiB) == [(LIMIT, str(16 * MiB)), (MEMSW, str(16 * MiB))]


def test_v1_memory_order_unlimited_swap_first() -> None:
    files = {LIMIT: str(16 * MiB), MEMSW: "-1"}
    assert v1_memory.write_order(files, current_limit=32 * MiB)[0] == (MEMSW, "-1")


def test_v1_memory_order_from_unlimited() -> None:
    # a fresh cgroup reads as "unlimited" (a huge number): limit goes first
    files = {LIMIT: str(32 * MiB), MEMSW: str(64 * MiB)}
    assert v1_memory.write_order(files, current_limit=9223372036854771712)[0] == (LIMIT, str(32 * MiB))


def test_v1_ordered_writes_keeps_other_files() -> None:
    writes = v1.ordered_writes(Resources(memory=64 * MiB, pids_limit=5, cpuset_cpus="0"), current_limit=8 * MiB)
    assert writes == [
        (MEMSW, str(128 * MiB)),
        (LIMIT, str(64 * MiB)),
        ("cpuset.cpus", "0"),
        ("pids.max", "5"),
    ]


def test_v2_everything() -> None:
    resources = Resources(
        memory=32 * MiB, memory_swap=48 * MiB, pids_limit=20, nano_cpus=500_000_000, cpu_shares=1024, cpuset_cpus="1"
    )
    assert v2.files(resources) == {
        "cpuset.cpus": "1",
        "memory.swap.max": str(16 * MiB),
        "memory.max": str(32 * MiB),
        "cpu.max": "50000 100000",
        "cpu.weight": "39",
        "pids.max": "20",
    }


def test_v2_swap_semantics() -> None:
    assert v2.files(Resources(memory=32 * MiB)) == {"memory.swap.max": str(32 * MiB), "memory.max": str(32 * MiB)}
    assert v2.files(Resources(memory=32 * MiB, memory_swap=-1))["memory.swap.max"] == "max"
    assert v2.files(Resources(memory=32 * MiB, memory_swap=32 * MiB))["memory.swap.max"] == "0"
    assert v2.files(Resources(memory_swap=-1)) == {"memory.swap.max": "max"}


def test_v2_pids_unlimited() -> None:
    assert v2.files(Resources(pids_limit=0)) == {"pids.max": "max"}


def test_shares_to_weight_as_runc() -> None:
    assert v2_cpu.shares_to_weight(2) == 1
    assert v2_cpu.shares_to_weight(1024) == 39
    assert v2_cpu.shares_to_weight(262144) == 10000
    assert v2.files(Resources(cpu_shares=10**7)) == {"cpu.weight": "10000"}


def test_file_names_carry_their_controller() -> None:
    everything = Resources(memory=32 * MiB, pids_limit=1, nano_cpus=10**9, cpu_shares=2, cpuset_cpus="0")
    assert {controller_of(f) for f in v1.files(everything)} == {"memory", "cpu", "cpuset", "pids"}
    assert {controller_of(f) for f in v2.files(everything)} == {"memory", "cpu", "cpuset", "pids"}


def test_stats_parsing() -> None:
    v1_stat = "nr_periods 10\nnr_throttled 4\nthrottled_time 2500000\nnr_bursts 0\nburst_time 0\n"
    stats = v1_cpu.stats(v1_stat, usage_ns=1_234_567_000)
    assert (stats.usage_usec, stats.nr_periods, stats.nr_throttled, stats.throttled_usec) == (1234567, 10, 4, 2500)
    v2_stat = "usage_usec 900\nuser_usec 800\nsystem_usec 100\nnr_periods 3\nnr_throttled 2\nthrottled_usec 70\n"
    stats = v2_cpu.stats(v2_stat)
    assert (stats.usage_usec, stats.nr_periods, stats.nr_throttled, stats.throttled_usec) == (900, 3, 2, 70)
    # without the cpu controller v2 cpu.stat has only the usage keys
    assert v2_cpu.stats("usage_usec 5\nuser_usec 5\nsystem_usec 0\n").nr_throttled == 0


def test_oom_kill_parsing() -> None:
    assert v1_memory.oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3
    assert v1_memory.oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0
    assert v2_memory.oom_kills("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n") == 1

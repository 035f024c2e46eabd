"""Resources validation (Docker's messages) and the Docker semantics helpers."""

from __future__ import annotations

import pytest

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups import HostCpus, Resources, merge_update

MiB = 1024 * 1024
HOST = HostCpus(count=2, online=frozenset({0, 1}), online_text="0-1")


def check(resources: Resources, message: str, *, update: bool = False) -> None:
    with pytest.raises(InvalidArgument) as err:
        resources.validate(HOST, update=update)
    assert str(err.value) == message


def test_valid_resources_pass() -> None:
    Resources().validate(HOST)
    Resources(memory=6 * MiB).validate(HOST)
    Resources(memory=32 * MiB, memory_swap=-1).validate(HOST)
    Resources(memory=32 * MiB, memory_swap=32 * MiB).validate(HOST)
    Resources(nano_cpus=10_000_000).validate(HOST)
    Resources(nano_cpus=2_000_000_000, cpuset_cpus="0-1", cpu_shares=512, pids_limit=20).validate(HOST)
    Resources(pids_limit=-1, cpu_shares=-5, cpuset_cpus="1,0").validate(HOST)


@pytest.mark.parametrize("memory", [1, 6 * MiB - 1, -1])
def test_minimum_memory(memory: int) -> None:
    check(Resources(memory=memory), "Minimum memory limit allowed is 6MB")


def test_swap_below_memory() -> None:
    check(
        Resources(memory=64 * MiB, memory_swap=32 * MiB),
        "Minimum memoryswap limit should be larger than memory limit, see usage",
    )


def test_swap_without_memory() -> None:
    message = "You should always set the Memory limit when using Memoryswap limit, see usage"
    check(Resources(memory_swap=64 * MiB), message)
    Resources(memory_swap=64 * MiB).validate(HOST, update=True)
    Resources(memory_swap=-1).validate(HOST)


def test_swap_below_minus_one() -> None:
    with pytest.raises(InvalidArgument, match="memoryswap"):
        Resources(memory=32 * MiB, memory_swap=-2).validate(HOST)


@pytest.mark.parametrize("nano", [2_000_000_001, 3_000_000_000, -1, 1, 9_999_999])
def test_cpu_range(nano: int) -> None:
    check(Resources(nano_cpus=nano), "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available")


@pytest.mark.parametrize("text", ["a", "0-", "-1", "1-0", "0,,1", " 0", "0-1-2", "0,"])
def test_cpuset_syntax(text: str) -> None:
    check(Resources(cpuset_cpus=text), f"Invalid value {text} for cpuset cpus: invalid format: {text}")


def test_cpuset_must_exist() -> None:
    check(Resources(cpuset_cpus="1-3"), "Requested CPUs are not available - requested 1-3, available: 0-1")


def test_effective_memory_swap() -> None:
    assert Resources().effective_memory_swap() is None
    assert Resources(memory=32 * MiB).effective_memory_swap() == 64 * MiB
    assert Resources(memory=32 * MiB, memory_swap=-1).effective_memory_swap() == -1
    assert Resources(memory=32 * MiB, memory_swap=40 * MiB).effective_memory_swap() == 40 * MiB
    assert Resources(memory_swap=-1).effective_memory_swap() == -1


def test_cfs_quota_and_shares() -> None:
    assert Resources(nano_cpus=500_000_000).cfs_quota_us() == 50_000
    assert Resources(nano_cpus=1_500_000_000).cfs_quota_us() == 150_000
    assert Resources().cfs_quota_us() is None
    assert Resources(cpu_shares=1).clamped_cpu_shares() == 2
    assert Resources(cpu_shares=-4).clamped_cpu_shares() == 2
    assert Resources(cpu_shares=10**6).clamped_cpu_shares() == 262144
    assert Resources(cpu_shares=0).clamped_cpu_shares() is None


def test_merge_update_keeps_unset_fields() -> None:
    current = Resources(memory=32 * MiB, pids_limit=20, cpuset_cpus="0")
    merged = merge_update(current, Resources(memory=48 * MiB))
    # Docker stored memory_swap = 2 x 32m at create time; an update keeps it
    assert merged == Resources(memory=48 * MiB, memory_swap=64 * MiB, pids_limit=20, cpuset_cpus="0")
    assert merge_update(current, Resources(pids_limit=0)).pids_limit == 0


def test_merge_update_memory_above_swap() -> None:
    with pytest.raises(InvalidArgument) as err:
        merge_update(Resources(memory=32 * MiB), Resources(memory=100 * MiB))
    assert str(err.value) == (
        "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
    )
    raised = merge_update(Resources(memory=32 * MiB), Resources(memory=100 * MiB, memory_swap=200 * MiB))
    assert raised.memory_swap == 200 * MiB

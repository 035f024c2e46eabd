"""v2 cpu controller: cpu.max and cpu.weight; usage and throttling from cpu.stat."""

from __future__ import annotations

from supervisor.isolation.cgroups.fs import parse_keyed
from supervisor.isolation.cgroups.interface import CpuStats
from supervisor.isolation.cgroups.resources import CFS_PERIOD_US, Resources

MAX = "cpu.max"
WEIGHT = "cpu.weight"
STAT = "cpu.stat"


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000], as runc converts."""
    return 1 + ((shares - 2) * 9999) // 262142


def files(resources: Resources) -> dict[str, str]:
    """The cpu files for `resources` (pure)."""
    out: dict[str, str] = {}
    quota = resources.cfs_quota_us()
    if quota is not None:
        out[MAX] = f"{quota} {CFS_PERIOD_US}"
    shares = resources.clamped_cpu_shares()
    if shares is not None:
        out[WEIGHT] = str(shares_to_weight(shares))
    return out


def stats(cpu_stat_text: str) -> CpuStats:
    """CpuStats from v2 cpu.stat (pure); the throttling keys need the cpu controller."""
    stat = parse_keyed(cpu_stat_text)
    return CpuStats(
        usage_usec=stat.get("usage_usec", 0),
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_usec=stat.get("throttled_usec", 0),
    )


def times_usec(cpu_stat_text: str) -> tuple[int, int]:
    """(user, system) microseconds from v2 cpu.stat (pure)."""
    stat = parse_keyed(cpu_stat_text)
    return stat.get("user_usec", 0), stat.get("system_usec", 0)

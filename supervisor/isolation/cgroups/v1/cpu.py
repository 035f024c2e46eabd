"""v1 cpu and cpuacct controllers: CFS quota and shares; usage and throttling."""

from __future__ import annotations

from supervisor.isolation.cgroups.fs import parse_keyed
from supervisor.isolation.cgroups.interface import CpuStats
from supervisor.isolation.cgroups.resources import CFS_PERIOD_US, Resources

PERIOD = "cpu.cfs_period_us"
QUOTA = "cpu.cfs_quota_us"
SHARES = "cpu.shares"
STAT = "cpu.stat"
USAGE = "cpuacct.usage"  # nanoseconds
TIMES = "cpuacct.stat"  # user and system, in clock ticks


def files(resources: Resources) -> dict[str, str]:
    """The cpu files to write for `resources` (pure)."""
    out: dict[str, str] = {}
    quota = resources.cfs_quota_us()
    if quota is not None:
        out[PERIOD] = str(CFS_PERIOD_US)
        out[QUOTA] = str(quota)
    shares = resources.clamped_cpu_shares()
    if shares is not None:
        out[SHARES] = str(shares)
    return out


def stats(cpu_stat_text: str, usage_ns: int) -> CpuStats:
    """CpuStats from v1 cpu.stat (throttled_time in ns) and cpuacct.usage (pure)."""
    stat = parse_keyed(cpu_stat_text)
    return CpuStats(
        usage_usec=usage_ns // 1000,
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_usec=stat.get("throttled_time", 0) // 1000,
    )


def times_usec(cpuacct_stat_text: str, ticks_per_second: int) -> tuple[int, int]:
    """(user, system) microseconds from cpuacct.stat, which counts clock ticks (pure)."""
    stat = parse_keyed(cpuacct_stat_text)
    scale = 1_000_000 // ticks_per_second
    return stat.get("user", 0) * scale, stat.get("system", 0) * scale

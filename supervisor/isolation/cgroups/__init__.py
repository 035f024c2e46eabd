"""cgroup drivers: v1 (and hybrid) and v2 behind one interface, chosen by detect().

driver = detect()
cgroup = driver.create("corral", container_id, Resources(memory=32 << 20))
# the container's process writes "0" into each of cgroup.procs_files()
...
cgroup.kill(); cgroup.remove()
"""

from supervisor.isolation.cgroups.cpulist import HostCpus, format_cpu_list, parse_cpu_list
from supervisor.isolation.cgroups.detect import NoCgroups, detect
from supervisor.isolation.cgroups.interface import (
    Cgroup,
    CgroupDriver,
    CgroupVersion,
    CpuStats,
    LimitRejected,
    OomSignal,
)
from supervisor.isolation.cgroups.mountinfo import CgroupMounts, V1Hierarchy, parse_mountinfo, read_mounts
from supervisor.isolation.cgroups.resources import Resources, merge_update
from supervisor.isolation.cgroups.v1.driver import V1Driver
from supervisor.isolation.cgroups.v2.driver import V2Driver
from supervisor.isolation.spec import Membership

__all__ = [
    "Cgroup",
    "CgroupDriver",
    "CgroupMounts",
    "CgroupVersion",
    "CpuStats",
    "HostCpus",
    "LimitRejected",
    "Membership",
    "NoCgroups",
    "OomSignal",
    "Resources",
    "V1Driver",
    "V1Hierarchy",
    "V2Driver",
    "detect",
    "format_cpu_list",
    "merge_update",
    "parse_cpu_list",
    "parse_mountinfo",
    "read_mounts",
]

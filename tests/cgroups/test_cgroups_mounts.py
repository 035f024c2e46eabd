"""mountinfo parsing, driver choice, CPU lists and cgroup path checks (pure)."""

from __future__ import annotations

import pytest

from supervisor.errors import InvalidArgument
from supervisor.isolation.cgroups import NoCgroups, V1Driver, V2Driver, detect, format_cpu_list, parse_cpu_list
from supervisor.isolation.cgroups.mountinfo import parse_mountinfo
from supervisor.isolation.cgroups.paths import child_parts, display, parent_parts

HYBRID = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

SYSTEMD_HYBRID = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
"""

PURE_V2 = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_hybrid() -> None:
    mounts = parse_mountinfo(HYBRID)
    assert mounts.unified == "/sys/fs/cgroup/unified"
    assert mounts.v1_dir("memory") == "/sys/fs/cgroup/memory"
    assert mounts.v1_dir("cpuacct") == "/sys/fs/cgroup/cpuacct"
    assert mounts.v1_dir("blkio") is None
    assert {h.key for h in mounts.v1} == {"cpu", "cpuacct", "cpuset", "memory", "freezer", "pids", "name=systemd"}
    driver = detect(mounts)
    assert isinstance(driver, V1Driver) and driver.version == "1"


def test_comounted_controllers_share_one_dir() -> None:
    mounts = parse_mountinfo(SYSTEMD_HYBRID)
    assert mounts.v1_dir("cpu") == mounts.v1_dir("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct"
    assert {h.key for h in mounts.v1} == {"cpu,cpuacct", "memory", "net_cls,net_prio", "name=systemd"}


def test_pure_v2() -> None:
    mounts = parse_mountinfo(PURE_V2)
    assert mounts.v1 == () and mounts.unified == "/sys/fs/cgroup"
    driver = detect(mounts)
    assert isinstance(driver, V2Driver) and driver.version == "2" and driver.root == "/sys/fs/cgroup"


def test_v2_with_named_v1_only_is_v2() -> None:
    extra = "50 35 0:40 / /run/systemd-compat rw,relatime - cgroup cgroup rw,name=systemd\n"
    assert isinstance(detect(parse_mountinfo(PURE_V2 + extra)), V2Driver)


def test_no_cgroups() -> None:
    with pytest.raises(NoCgroups):
        detect(parse_mountinfo("24 30 0:22 / /sys rw - sysfs sysfs rw\n"))


def test_bind_mount_of_a_subtree_loses_to_the_root_mount() -> None:
    text = (
        "60 1 0:32 /docker/abc /mnt/mem rw - cgroup cgroup rw,memory\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    assert parse_mountinfo(text).v1_dir("memory") == "/sys/fs/cgroup/memory"


def test_escaped_mountpoint() -> None:
    text = "35 31 0:32 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    assert parse_mountinfo(text).unified == "/mnt/my cgroups"


def test_cpu_lists() -> None:
    assert parse_cpu_list("") == frozenset()
    assert parse_cpu_list("0-2,5") == {0, 1, 2, 5}
    assert parse_cpu_list("3,1") == {1, 3}
    assert format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpu_list(set()) == ""
    for bad in ("x", "1-", "2-1", "1,,2", "+1", "1 "):
        with pytest.raises(ValueError, match="invalid format"):
            parse_cpu_list(bad)


def test_cgroup_paths() -> None:
    assert parent_parts("/corral/web/") == ("corral", "web")
    assert parent_parts("") == ()
    assert child_parts("corral", "abc") == ("corral", "abc")
    assert display(("corral", "abc")) == "/corral/abc"
    for parent in ("../x", "a/./b", "a/..", "a\nb"):
        with pytest.raises(InvalidArgument, match="cgroup parent"):
            parent_parts(parent)
    for name in ("a/b", "", "..", "."):
        with pytest.raises(InvalidArgument, match="cgroup name"):
            child_parts("corral", name)

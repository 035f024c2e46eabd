"""Done-when 8: the session's leak check sees each kind of kernel object it guards."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from harness import wait_for
from leaks import TEST_MARK, snapshot


def test_leak_check_sees_cgroups_mounts_processes_and_netns() -> None:
    before = snapshot()
    cgroup = Path("/sys/fs/cgroup/pids") / f"{TEST_MARK}-selfcheck"
    mountpoint = Path(tempfile.mkdtemp(prefix=TEST_MARK))
    cgroup.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mountpoint)], check=True)
    # A process in its own network namespace, with the mark on its command line.
    process = subprocess.Popen(["unshare", "--net", "sh", "-c", f"sleep 30; : {TEST_MARK}"], start_new_session=True)
    try:
        leaks = wait_for(
            lambda: (lambda s: s if {"netns", "processes"} <= set(s) else None)(snapshot().new_since(before))
        )
        assert str(cgroup) in leaks["cgroups"]
        assert any(str(mountpoint) in m for m in leaks["mounts"])
        assert any(TEST_MARK in p for p in leaks["processes"])
        assert leaks["netns"]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        subprocess.run(["umount", str(mountpoint)], check=True)
        mountpoint.rmdir()
        cgroup.rmdir()
    wait_for(lambda: snapshot().new_since(before) == {})

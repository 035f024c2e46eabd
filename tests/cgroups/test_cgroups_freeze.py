"""Cgroup.freeze/thaw (commit's --pause) on the real kernel: the v2 cgroup.freeze and the v1 freezer."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from cgroup_sandbox import Sandbox, wait_for

from supervisor.isolation.cgroups.interface import Cgroup
from supervisor.isolation.cgroups.v1.cgroup import V1Cgroup


def _progress(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (ValueError, FileNotFoundError):
        return 0


def _check_freeze(sandbox: Sandbox, cgroup: Cgroup, counter: Path) -> None:
    sandbox.busybox(
        cgroup, "sh", "-c", f"i=0; while :; do i=$((i+1)); echo $i > {counter}.tmp; mv {counter}.tmp {counter}; done"
    )
    assert wait_for(lambda: _progress(counter) > 10)
    assert cgroup.freeze()
    frozen_at = _progress(counter)
    time.sleep(0.3)
    assert _progress(counter) == frozen_at, "the cgroup kept running while frozen"
    cgroup.thaw()
    assert wait_for(lambda: _progress(counter) > frozen_at + 10), "the cgroup did not run again after thaw"
    cgroup.thaw()  # harmless twice


def test_freeze_and_thaw(sandbox: Sandbox, tmp_path: Path) -> None:
    _check_freeze(sandbox, sandbox.create(), tmp_path / "counter")


def test_freeze_and_thaw_with_the_v1_freezer(sandbox: Sandbox, tmp_path: Path) -> None:
    cgroup = sandbox.create()
    if not isinstance(cgroup, V1Cgroup) or cgroup.controller_dir("freezer") is None:
        pytest.skip("no v1 freezer")
    v1_only = V1Cgroup(cgroup.parts, dataclasses.replace(cgroup.mounts, unified=None))
    _check_freeze(sandbox, v1_only, tmp_path / "counter")
    assert Path(cgroup.controller_dir("freezer") or "", "freezer.state").read_text().strip() == "THAWED"


def test_thaw_of_a_removed_cgroup_is_harmless(sandbox: Sandbox) -> None:
    cgroup = sandbox.create(name="gone")
    assert cgroup.remove()
    cgroup.thaw()
    assert not any(os.path.isdir(d) for d in cgroup.paths.values())

"""Helpers for cgroup tests on the real kernel: a unique parent per test,
processes started inside a cgroup, and a leak check of every hierarchy."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from supervisor.isolation.cgroups import Cgroup, CgroupDriver, Resources, read_mounts

BUSYBOX = shutil.which("busybox")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def hierarchy_roots() -> list[str]:
    mounts = read_mounts()
    return [h.mountpoint for h in mounts.v1] + ([mounts.unified] if mounts.unified else [])


@dataclass
class Sandbox:
    """One test's cgroups under `parent`; everything is torn down afterwards."""

    driver: CgroupDriver
    parent: str
    cgroups: list[Cgroup] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def create(self, resources: Resources | None = None, name: str = "c") -> Cgroup:
        cgroup = self.driver.create(self.parent, name, resources or Resources())
        self.cgroups.append(cgroup)
        return cgroup

    def spawn(self, cgroup: Cgroup, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start argv inside `cgroup`, joining it as the launcher's child will."""
        files = cgroup.procs_files()

        def join() -> None:
            for path in files:
                with open(path, "w") as f:
                    f.write("0")

        proc = subprocess.Popen(argv, preexec_fn=join, **kwargs)
        self.procs.append(proc)
        return proc

    def busybox(self, cgroup: Cgroup, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        assert BUSYBOX is not None
        return self.spawn(cgroup, BUSYBOX, *argv, **kwargs)

    def teardown(self) -> list[str]:
        """Kill, reap and remove everything; the hierarchies where `parent` leaked.

        Every step runs even if an earlier one failed; the first failure is
        raised at the end.
        """
        errors: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - re-raised below
                errors.append(err)

        for cgroup in self.cgroups:
            if any(os.path.isdir(d) for d in cgroup.paths.values()):
                attempt(cgroup.kill)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            attempt(lambda proc=proc: proc.wait(timeout=10))  # type: ignore[misc]
        for cgroup in self.cgroups:
            wait_for(lambda cgroup=cgroup: not cgroup.pids())  # type: ignore[misc]
            attempt(cgroup.remove)
        attempt(lambda: self.driver.remove_parent(self.parent))
        if errors:
            raise errors[0]
        return [root for root in hierarchy_roots() if os.path.exists(os.path.join(root, self.parent))]


@contextmanager
def open_sandbox(driver: CgroupDriver) -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("cgroup tests need root")
    if BUSYBOX is None:
        pytest.skip("cgroup tests need busybox")
    box = Sandbox(driver, f"corral-test-{secrets.token_hex(4)}")
    try:
        yield box
    finally:
        leaks = box.teardown()
        assert not leaks, f"cgroup {box.parent} leaked in {leaks}"

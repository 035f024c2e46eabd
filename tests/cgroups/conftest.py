"""Fixtures for the cgroup tests; the helpers live in cgroup_sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cgroup_sandbox import Sandbox, open_sandbox

from supervisor.isolation.cgroups import V2Driver, detect, read_mounts


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """This host's driver, as detect() chooses it."""
    with open_sandbox(detect()) as box:
        yield box


@pytest.fixture
def unified_sandbox() -> Iterator[Sandbox]:
    """V2Driver on the unified hierarchy of a hybrid host (no controllers there)."""
    mounts = read_mounts()
    if mounts.unified is None or not mounts.has_v1_controllers:
        pytest.skip("needs a hybrid host")
    with open_sandbox(V2Driver(mounts.unified)) as box:
        yield box
